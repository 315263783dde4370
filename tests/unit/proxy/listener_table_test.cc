// ListenerTable: listener identities across reloads (diff by address, stable ids, labels and
// metric slots; removed listeners reserve their slot while they drain).
#include "proxy/listener_table.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

using Addresses = std::vector<std::string>;

// Gauges per slot, as the workers' counters would read.
struct Gauges {
  std::map<size_t, int64_t> active;
  ListenerTable::ActiveGauge fn() {
    return [this](size_t slot) {
      auto it = active.find(slot);
      return it == active.end() ? int64_t{0} : it->second;
    };
  }
};

ListenerTable reloaded(ListenerTable table, const Addresses& next, Gauges& gauges) {
  const ListenerDiff d = table.diff(next);
  table.commit(next, d, gauges.fn());
  return table;
}

TEST(ListenerKey, CanonicalAddressText) {
  EXPECT_EQ(listenerKey("127.0.0.1:8080"), "127.0.0.1:8080");
  EXPECT_EQ(listenerKey("[0:0::1]:443"), "[::1]:443");
  EXPECT_EQ(listenerKey("[::1]:443"), listenerKey("[0:0:0:0:0:0:0:1]:443"));
  EXPECT_NE(listenerKey("[::]:443"), listenerKey("0.0.0.0:443"));
  EXPECT_EQ(listenerKey("not an address"), "not an address");
}

TEST(ListenerTable, StartGivesPositionsAsIdsAndSlotsAndMarksRepeatedLabels) {
  ListenerTable table(32);
  table.start({"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:8443"});
  ASSERT_EQ(table.current().size(), 3u);
  EXPECT_EQ(table.current()[0].id, 0u);
  EXPECT_EQ(table.current()[1].id, 1u);
  EXPECT_EQ(table.current()[2].slot, 2u);
  // Labels as before stable identities existed: the configured address, "#<index>" when repeated.
  EXPECT_EQ(table.current()[0].label, "127.0.0.1:0");
  EXPECT_EQ(table.current()[1].label, "127.0.0.1:0#1");
  EXPECT_EQ(table.current()[2].label, "127.0.0.1:8443");
}

TEST(ListenerTable, UnchangedListIsNoChange) {
  ListenerTable table(32);
  table.start({"127.0.0.1:80", "[::1]:443"});
  const ListenerDiff d = table.diff({"127.0.0.1:80", "[0::1]:443"});
  EXPECT_FALSE(d.changesSockets());
  ASSERT_EQ(d.kept_from.size(), 2u);
  EXPECT_EQ(d.kept_from[0], std::optional<size_t>(0));
  EXPECT_EQ(d.kept_from[1], std::optional<size_t>(1));
}

TEST(ListenerTable, RemovingTheFirstListenerShiftsNoOtherIdentity) {
  ListenerTable table(32);
  table.start({"127.0.0.1:80", "127.0.0.1:81", "127.0.0.1:82"});
  const ListenerEntry second = table.current()[1];
  const ListenerEntry third = table.current()[2];
  Gauges gauges;
  gauges.active[0] = 3;  // the removed listener still has connections
  const ListenerDiff d = table.diff({"127.0.0.1:81", "127.0.0.1:82"});
  EXPECT_EQ(d.removed, std::vector<size_t>{0});
  EXPECT_EQ(d.added(), 0u);
  table.commit({"127.0.0.1:81", "127.0.0.1:82"}, d, gauges.fn());
  ASSERT_EQ(table.current().size(), 2u);
  EXPECT_EQ(table.current()[0].id, second.id);
  EXPECT_EQ(table.current()[0].slot, second.slot);
  EXPECT_EQ(table.current()[0].label, second.label);
  EXPECT_EQ(table.current()[1].id, third.id);
  EXPECT_EQ(table.current()[1].slot, third.slot);
  // The removed one drains under its own label and slot.
  ASSERT_EQ(table.retired().size(), 1u);
  EXPECT_EQ(table.retired()[0].label, "127.0.0.1:80");
  EXPECT_EQ(table.slotLabel(0), "127.0.0.1:80");
}

TEST(ListenerTable, AddedListenerGetsANewIdAndAFreeSlot) {
  ListenerTable table(32);
  table.start({"127.0.0.1:80", "127.0.0.1:81"});
  Gauges gauges;
  table = reloaded(table, {"127.0.0.1:90", "127.0.0.1:80", "127.0.0.1:81"}, gauges);
  ASSERT_EQ(table.current().size(), 3u);
  EXPECT_EQ(table.current()[0].id, 2u);  // ids are never reused
  EXPECT_EQ(table.current()[0].slot, 2u);
  EXPECT_EQ(table.current()[0].label, "127.0.0.1:90");
  EXPECT_EQ(table.current()[1].id, 0u);
  EXPECT_EQ(table.current()[2].id, 1u);
}

TEST(ListenerTable, ASlotIsReusedOnlyOnceItsDrainingListenerHasNoConnections) {
  ListenerTable table(32);
  table.start({"127.0.0.1:80", "127.0.0.1:81"});
  Gauges gauges;
  gauges.active[0] = 1;
  table = reloaded(table, {"127.0.0.1:81"}, gauges);
  // Slot 0 still counts the removed listener's connection: the new one must not share it.
  table = reloaded(table, {"127.0.0.1:81", "127.0.0.1:82"}, gauges);
  EXPECT_EQ(table.current()[1].slot, 2u);
  gauges.active[0] = 0;
  table.forgetDrained(gauges.fn());
  EXPECT_TRUE(table.retired().empty());
  EXPECT_EQ(table.slotLabel(0), "");
  table = reloaded(table, {"127.0.0.1:81", "127.0.0.1:82", "127.0.0.1:83"}, gauges);
  EXPECT_EQ(table.current()[2].slot, 0u);
}

TEST(ListenerTable, ReAddingAnAddressStillDrainingGetsItsOwnLabel) {
  ListenerTable table(32);
  table.start({"127.0.0.1:80", "127.0.0.1:81"});
  Gauges gauges;
  gauges.active[0] = 2;
  table = reloaded(table, {"127.0.0.1:81"}, gauges);
  table = reloaded(table, {"127.0.0.1:81", "127.0.0.1:80"}, gauges);
  EXPECT_EQ(table.current()[1].label, "127.0.0.1:80#2");
  EXPECT_NE(table.current()[1].slot, 0u);
}

TEST(ListenerTable, RepeatedAddressesMatchByOccurrence) {
  ListenerTable table(32);
  table.start({"127.0.0.1:0", "127.0.0.1:8443", "127.0.0.1:0"});
  // One port-0 listener fewer: the first stays, the second (id 2) goes.
  ListenerDiff d = table.diff({"127.0.0.1:0", "127.0.0.1:8443"});
  EXPECT_EQ(d.kept_from[0], std::optional<size_t>(0));
  EXPECT_EQ(d.kept_from[1], std::optional<size_t>(1));
  EXPECT_EQ(d.removed, std::vector<size_t>{2});
  // One more: both running ones stay, a third is added.
  d = table.diff({"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:8443"});
  EXPECT_EQ(d.kept_from[0], std::optional<size_t>(0));
  EXPECT_EQ(d.kept_from[1], std::optional<size_t>(2));
  EXPECT_EQ(d.kept_from[2], std::nullopt);
  EXPECT_EQ(d.kept_from[3], std::optional<size_t>(1));
  EXPECT_TRUE(d.removed.empty());
  Gauges gauges;
  table.commit({"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:8443"}, d, gauges.fn());
  EXPECT_EQ(table.current()[2].label, "127.0.0.1:0#3");
}

TEST(ListenerTable, ListenersPastTheSlotsShareTheLastOne) {
  ListenerTable table(3);
  table.start({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"});
  EXPECT_EQ(table.current()[0].slot, 0u);
  EXPECT_EQ(table.current()[1].slot, 1u);
  EXPECT_EQ(table.current()[2].slot, 2u);
  EXPECT_EQ(table.current()[3].slot, 2u);
  EXPECT_EQ(table.slotLabel(2), "other");
  EXPECT_EQ(table.slotLabel(1), "127.0.0.1:2");
  // A shared-slot listener removed reserves nothing (its gauge is not its own).
  Gauges gauges;
  gauges.active[2] = 5;
  table = reloaded(table, {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, gauges);
  EXPECT_TRUE(table.retired().empty());
  EXPECT_EQ(table.slotLabel(2), "127.0.0.1:3");
}

}  // namespace
}  // namespace streamedge::proxy
