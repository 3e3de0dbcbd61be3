// The supplementary groups of a process from /proc/PID/status (fs/process_groups.h).
#include "fs/process_groups.h"

#include <unistd.h>

#include <algorithm>
#include <string>

#include <gtest/gtest.h>

namespace dpmfs::fs {
namespace {

TEST(ProcessGroups, ParsesTheGroupsLineAnywhereInTheText) {
  std::vector<uint32_t> g;
  size_t total = 0;
  ASSERT_TRUE(ParseStatusGroups("Name:\tx\nUid:\t1\t1\t1\t1\nGroups:\t4 24 27 1000 \nNgid:\t0\n",
                                16, &g, &total));
  EXPECT_EQ(g, (std::vector<uint32_t>{4, 24, 27, 1000}));
  EXPECT_EQ(total, 4u);
  g.clear();
  ASSERT_TRUE(ParseStatusGroups("Groups:\t\n", 16, &g, &total)) << "no groups at all";
  EXPECT_TRUE(g.empty());
  EXPECT_EQ(total, 0u);
  ASSERT_TRUE(ParseStatusGroups("Groups:\t7", 16, &g, &total)) << "the text's last line";
  EXPECT_EQ(g, (std::vector<uint32_t>{7}));
}

TEST(ProcessGroups, KeepsAtMostTheLimitAndCountsTheRest) {
  std::string text = "Groups:";
  for (int i = 0; i < 100; ++i) text += " " + std::to_string(i);
  std::vector<uint32_t> g;
  size_t total = 0;
  ASSERT_TRUE(ParseStatusGroups(text, 32, &g, &total));
  EXPECT_EQ(g.size(), 32u);
  EXPECT_EQ(g.back(), 31u);
  EXPECT_EQ(total, 100u);
}

TEST(ProcessGroups, RefusesWhatIsNotAListOfNumbers) {
  std::vector<uint32_t> g;
  size_t total = 0;
  EXPECT_FALSE(ParseStatusGroups("Name:\tx\n", 16, &g, &total)) << "no Groups line";
  EXPECT_FALSE(ParseStatusGroups("Groups:\t1 x 2\n", 16, &g, &total));
  EXPECT_FALSE(ParseStatusGroups("Groups:\t99999999999\n", 16, &g, &total)) << "past 32 bits";
  EXPECT_FALSE(ParseStatusGroups("XGroups:\t1\n", 16, &g, &total)) << "another key";
  EXPECT_TRUE(g.empty()) << "nothing appended on a refusal";
}

TEST(ProcessGroups, ReadsThisProcessAsTheKernelSaysIt) {
  std::vector<uint32_t> g;
  size_t total = 0;
  ASSERT_TRUE(ReadProcessGroups(::getpid(), 1024, &g, &total));
  std::vector<gid_t> want(static_cast<size_t>(::getgroups(0, nullptr)));
  want.resize(static_cast<size_t>(::getgroups(static_cast<int>(want.size()), want.data())));
  EXPECT_EQ(total, want.size());
  for (gid_t w : want) EXPECT_NE(std::find(g.begin(), g.end(), w), g.end()) << w;
  EXPECT_FALSE(ReadProcessGroups(-1, 16, &g, &total)) << "no such process";
}

}  // namespace
}  // namespace dpmfs::fs
