// Distributed runs on loopback with Gloo: `layerfreeze launch` starts 1, 2 or 4 processes of
// examples/distributed/distributed_finetune; each rank writes its final weight hash, its
// requires_grad states and, per step, the bytes it all-reduced against the trainable and full
// gradient bytes. This binary does not link LibTorch: it only starts processes and reads files.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string output;  // stdout and stderr, interleaved
  double seconds = 0;
};

Result sh(const std::string& cmd) {
  Result r;
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(("OMP_NUM_THREADS=1 " + cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string launch(int nproc, const std::string& args,
                   const std::string& launch_opts = "--timeout 240") {
  return std::string(LAYERFREEZE_CLI) + " launch --nproc " + std::to_string(nproc) + " " +
         launch_opts + " -- " + LAYERFREEZE_DIST_WORKER + " --quiet " + args;
}

// Each rank runs `script` under sh, the worker being "$0": per-rank arguments come from $RANK.
std::string launch_script(int nproc, const std::string& script,
                          const std::string& launch_opts = "--timeout 60") {
  return std::string(LAYERFREEZE_CLI) + " launch --nproc " + std::to_string(nproc) + " " +
         launch_opts + " -- sh -c '" + script + "' " + LAYERFREEZE_DIST_WORKER;
}

// A rank's record.
struct StepLine {
  int64_t sent = 0, trainable = 0, full = 0, buckets = 0;
  bool rebuilt = false;
};
struct RankFile {
  std::vector<StepLine> steps;
  std::string weights, requires_grad;
};

RankFile read_rank(const fs::path& dir, int rank) {
  RankFile f;
  std::ifstream in(dir / ("rank-" + std::to_string(rank) + ".txt"));
  EXPECT_TRUE(in) << "rank " << rank << " wrote no record in " << dir;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string tag;
    ls >> tag;
    if (tag == "step") {
      StepLine s;
      int64_t step;
      std::string k1, k2, k3, k4, k5;
      ls >> step >> k1 >> s.sent >> k2 >> s.trainable >> k3 >> s.full >> k4 >> s.buckets >> k5 >>
          s.rebuilt;
      f.steps.push_back(s);
    } else if (tag == "weights") {
      ls >> f.weights;
    } else if (tag == "requires_grad") {
      ls >> f.requires_grad;
    }
  }
  return f;
}

fs::path fresh_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("layerfreeze-dist-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Every rank ends with bit-identical weights and requires_grad states, and every step sent
// exactly the trainable gradients' bytes. Returns how many steps rebuilt the buckets.
int64_t check_ranks(const fs::path& dir, int nproc, int64_t steps) {
  int64_t rebuilt = 0;
  RankFile first = read_rank(dir, 0);
  EXPECT_EQ(static_cast<int64_t>(first.steps.size()), steps);
  EXPECT_FALSE(first.weights.empty());
  for (int r = 1; r < nproc; ++r) {
    RankFile f = read_rank(dir, r);
    EXPECT_EQ(f.weights, first.weights) << "rank " << r << " holds other weights than rank 0";
    EXPECT_EQ(f.requires_grad, first.requires_grad) << "rank " << r;
    EXPECT_EQ(f.steps.size(), first.steps.size());
    for (size_t s = 0; s < std::min(f.steps.size(), first.steps.size()); ++s)
      EXPECT_EQ(f.steps[s].rebuilt, first.steps[s].rebuilt) << "step " << s;
  }
  for (size_t s = 0; s < first.steps.size(); ++s) {
    const auto& st = first.steps[s];
    EXPECT_EQ(st.sent, st.trainable) << "step " << s << ": sent other than the trainable gradients";
    EXPECT_LT(st.sent, st.full) << "step " << s;
    if (s > 0 && st.trainable != first.steps[s - 1].trainable) {
      EXPECT_TRUE(st.rebuilt) << "step " << s;
    }
    rebuilt += st.rebuilt;
  }
  EXPECT_TRUE(first.steps.empty() || first.steps[0].rebuilt) << "the first step builds the buckets";
  return rebuilt;
}

struct RunCase {
  const char* name;
  int nproc;
  const char* args;
  int64_t steps;
  int64_t min_changes;  // steps at which the trainable set changed (buckets rebuilt)
};

void PrintTo(const RunCase& c, std::ostream* os) { *os << c.name; }

class DistributedRun : public ::testing::TestWithParam<RunCase> {};

TEST_P(DistributedRun, RanksEndIdenticalAndSendOnlyTrainableGradients) {
  const RunCase& c = GetParam();
  fs::path dir = fresh_dir(c.name);
  Result r = sh(launch(c.nproc, std::string(c.args) + " --out " + dir.string()));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_GE(check_ranks(dir, c.nproc, c.steps), c.min_changes) << r.output;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Loopback, DistributedRun,
    ::testing::Values(
        RunCase{
            "gradual2", 2,
            "--rules preset:gradual_unfreeze --set total_epochs=4 --epochs 4 --steps-per-epoch 3",
            12, 4},
        RunCase{"gradual2overlap", 2,
                "--rules preset:gradual_unfreeze --set total_epochs=4 --epochs 4 --steps-per-epoch "
                "3 --overlap "
                "--bucket-kb 64",
                12, 4},
        RunCase{
            "gradual4", 4,
            "--rules preset:gradual_unfreeze --set total_epochs=4 --epochs 4 --steps-per-epoch 3",
            12, 4},
        RunCase{"lisa2", 2,
                "--rules preset:lisa --set active_layers=1 --set interval_steps=2 --epochs 2 "
                "--steps-per-epoch 6 "
                "--bucket-kb 64",
                12, 4},
        RunCase{"lisa4", 4,
                "--rules preset:lisa --set active_layers=2 --set interval_steps=3 --epochs 2 "
                "--steps-per-epoch 6 "
                "--bucket-kb 64 --global-batch 8",
                12, 3}),
    [](const auto& info) { return std::string(info.param.name); });

// The data-parallel run computes what one process computes on the whole batch (SGD: equal up
// to float rounding; Adam would amplify the rounding of near-zero gradients).
TEST(Distributed, MatchesOneProcessOnTheWholeBatch) {
  fs::path dir = fresh_dir("reference");
  const std::string args =
      "--rules preset:gradual_unfreeze --set total_epochs=3 --epochs 3 --steps-per-epoch 3 "
      "--optimizer sgd --lr 0.01";
  Result one = sh(launch(1, args + " --save-weights " + (dir / "one.pt").string()));
  ASSERT_EQ(one.code, 0) << one.output;
  Result two =
      sh(launch(2, args + " --tolerance 1e-5 --compare-with " + (dir / "one.pt").string()));
  EXPECT_EQ(two.code, 0) << two.output;
  EXPECT_NE(two.output.find("largest difference from the single-process run"), std::string::npos)
      << two.output;
  fs::remove_all(dir);
}

// Synchronising every gradient (the DDP-before-freezing baseline) sends the full model's bytes
// and, on two ranks, lands on the very same weights as trainable-only synchronisation.
TEST(Distributed, AllGradientsBaselineSendsEverythingForTheSameResult) {
  fs::path a = fresh_dir("trainable"), b = fresh_dir("all");
  const std::string args = "--rules preset:lp_lora --epochs 2 --steps-per-epoch 3";
  Result ra = sh(launch(2, args + " --out " + a.string()));
  Result rb = sh(launch(2, args + " --all-gradients --out " + b.string()));
  ASSERT_EQ(ra.code, 0) << ra.output;
  ASSERT_EQ(rb.code, 0) << rb.output;
  RankFile fa = read_rank(a, 0), fb = read_rank(b, 0);
  EXPECT_EQ(fa.weights, fb.weights);
  for (const auto& s : fb.steps) EXPECT_EQ(s.sent, s.full);
  for (const auto& s : fa.steps)
    EXPECT_LT(s.sent * 2, s.full) << "lp_lora trains well under half the model";
  fs::remove_all(a);
  fs::remove_all(b);
}

// Overlapping the all-reduce with backward changes when bytes move, not what arrives.
TEST(Distributed, OverlapLandsOnTheSameWeights) {
  fs::path a = fresh_dir("plain"), b = fresh_dir("overlap");
  const std::string args =
      "--rules preset:gradual_unfreeze --set total_epochs=3 --epochs 3 --steps-per-epoch 3 "
      "--bucket-kb 32";
  Result ra = sh(launch(2, args + " --out " + a.string()));
  Result rb = sh(launch(2, args + " --overlap --out " + b.string()));
  ASSERT_EQ(ra.code, 0) << ra.output;
  ASSERT_EQ(rb.code, 0) << rb.output;
  EXPECT_EQ(read_rank(a, 0).weights, read_rank(b, 0).weights);
  EXPECT_EQ(read_rank(a, 1).weights, read_rank(b, 1).weights);
  fs::remove_all(a);
  fs::remove_all(b);
}

// One rank compiles another plan: every rank fails with the same explanation, before any step,
// well within the launcher's timeout.
TEST(Distributed, DisagreementFailsEveryRankWithAClearMessage) {
  Result r = sh(launch_script(
      2, "exec \"$0\" --quiet --rules preset:gradual_unfreeze --set total_epochs=$((4 + RANK))"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_LT(r.seconds, 50) << r.output;
  for (int rank = 0; rank < 2; ++rank) {
    std::string p = "[rank " + std::to_string(rank) + "] ";
    EXPECT_NE(
        r.output.find(
            p + "error: the ranks disagree on the freezing plan: rank 1 of 2 differs from rank 0 "
                "[plan-disagreement]"),
        std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(p + "  note: rules parameter `total_epochs`: 4 on rank 0, 5 on rank 1"),
              std::string::npos)
        << r.output;
    EXPECT_NE(
        r.output.find(
            p + "  note: first difference at epoch 1 · step 6 (progressive 'open layers' groups "
                "1–2/4 at epoch 1): `transformer.h.2.ln_1.weight` is trainable on rank 0 and "
                "frozen on rank 1 (and 11 more parameters)"),
        std::string::npos)
        << r.output;
  }
  EXPECT_EQ(r.output.find("epoch 0:"), std::string::npos) << "a step ran: " << r.output;
}

TEST(Distributed, DisagreementOnOneOfFourRanksNamesIt) {
  Result r = sh(launch_script(
      4,
      "n=3; [ $RANK = 2 ] && n=2; exec \"$0\" --quiet --rules preset:freeze_first_n --set n=$n"));
  EXPECT_EQ(r.code, 1) << r.output;
  for (int rank = 0; rank < 4; ++rank)
    EXPECT_NE(
        r.output.find(
            "[rank " + std::to_string(rank) +
            "] error: the ranks disagree on the freezing plan: rank 2 of 4 differs from rank 0"),
        std::string::npos)
        << r.output;
  EXPECT_NE(r.output.find("rules parameter `n`: 3 on rank 0, 2 on rank 2"), std::string::npos)
      << r.output;
  EXPECT_NE(
      r.output.find(
          "first difference at epoch 0 (start): `transformer.h.2.ln_1.weight` is frozen on rank 0 "
          "and trainable on rank 2 (and 11 more parameters)"),
      std::string::npos)
      << r.output;
}

TEST(Distributed, AnotherModelOnOneRankIsNamed) {
  Result r =
      sh(launch_script(2, "exec \"$0\" --quiet --rules preset:lp_lora --layers $((4 - RANK))"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("rank 1 loaded another model: `transformer.h.3.ln_1.weight` and 11 more "
                          "parameters exist only "
                          "on rank 0 (52 parameters on rank 0, 40 on rank 1)"),
            std::string::npos)
      << r.output;
}

// A rank that dies before the rendezvous: the others fail on their own when the group's
// timeout expires, instead of hanging.
TEST(Distributed, DeadRankIsATimeoutNotAHang) {
  Result r = sh("LAYERFREEZE_DIST_TIMEOUT=5 " +
                launch_script(2, "[ $RANK = 1 ] && exit 7; exec \"$0\" --quiet",
                              "--grace 120 --timeout 120"));
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_LT(r.seconds, 60) << r.output;
  EXPECT_NE(r.output.find("[rank 0] error: forming the process group with 127.0.0.1:"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("rank 1 failed (exit 7)"), std::string::npos) << r.output;
}

}  // namespace
