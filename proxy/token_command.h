// `streamedge token`: mints a signed-URL token for a route with token_auth and prints it, for
// operators and the customer's own backend to hand to viewers (proxy/url_token.h has the
// format). Runs without a config and without the network: it reads the key file only.
#pragma once

namespace streamedge::proxy {

// `argc`/`argv` are the arguments after "token". Returns the process exit code: 0 with the
// token and a newline on stdout, 1 with one error line on stderr, 0 for --help.
int runTokenCommand(int argc, char** argv);

}  // namespace streamedge::proxy
