#include "metrics/exposition.h"

#include <gtest/gtest.h>

namespace streamedge::metrics {
namespace {

TEST(Exposition, CountersCarryOnlyConfigAndVocabularyLabels) {
  Snapshot s;
  s.start_time_unix_seconds = 1700000000;
  s.requests_by_result = {{"hit", 7}, {"miss", 2}};
  s.responses_by_class = {{"2xx", 9}};
  s.origins = {{"main", "127.0.0.1:8081", "dc-a", true}, {"main", "b", "dc-b", false}};
  s.cache_objects = 3;
  const std::string text = renderPrometheus(s);
  EXPECT_NE(text.find("streamedge_requests_total{result=\"hit\"} 7"), std::string::npos) << text;
  EXPECT_NE(text.find("streamedge_requests_total{result=\"miss\"} 2"), std::string::npos);
  EXPECT_NE(text.find("streamedge_origin_up{group=\"main\",origin=\"127.0.0.1:8081\",dc=\"dc-a\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("streamedge_origin_up{group=\"main\",origin=\"b\",dc=\"dc-b\"} 0"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE streamedge_requests_total counter"), std::string::npos);
  EXPECT_NE(text.find("streamedge_cache_objects{tier=\"ram\"} 3"), std::string::npos);
  EXPECT_NE(text.find("process_start_time_seconds 1700000000"), std::string::npos);
  EXPECT_NE(text.find("streamedge_build_info{"), std::string::npos);
}

}  // namespace
}  // namespace streamedge::metrics
