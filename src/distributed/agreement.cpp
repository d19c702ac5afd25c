// CompiledPlan agreement: one all-gather of a fixed-size digest per rank; only on a mismatch a
// second exchange of full plan records, so every rank can print the same explanation before it
// throws.
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <ATen/Functions.h>

#include <algorithm>
#include <cstring>

#include "analysis/plan_record.hpp"
#include "api/plan_access.hpp"
#include "core/plan.hpp"
#include "distributed/errors.hpp"
#include "layerfreeze/distributed.hpp"

namespace layerfreeze::distributed {

namespace {

// All-gathers one byte tensor of the same size from every rank.
std::vector<at::Tensor> all_gather(c10d::ProcessGroup& group, const at::Tensor& mine,
                                   const std::string& what) {
  return guarded(what, [&] {
    std::vector<at::Tensor> in{mine};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < group.getSize(); ++r) out[0].push_back(at::empty_like(mine));
    group.allgather(out, in)->wait();
    return out[0];
  });
}

at::Tensor bytes_tensor(const void* data, size_t n) {
  at::Tensor t = at::zeros({static_cast<int64_t>(n)}, at::kByte);
  if (n) std::memcpy(t.data_ptr(), data, n);
  return t;
}

constexpr size_t kHeaderBytes = kPlanDigestBytes + 2 * sizeof(int64_t);
constexpr size_t kMetricBytes = 8 + 136;  // a double, then the metric's name (128 at most)

}  // namespace

double report_metric(c10d::ProcessGroup& group, Executor& executor, const std::string& metric,
                     double local_value) {
  // The name travels too: ranks that report different metrics at one call are a bug to name,
  // not a mean to take.
  unsigned char mine[kMetricBytes] = {};
  std::memcpy(mine, &local_value, sizeof local_value);
  std::memcpy(mine + sizeof(double), metric.data(),
              std::min(metric.size(), kMetricBytes - sizeof(double) - 1));
  auto all = all_gather(group, bytes_tensor(mine, kMetricBytes), "averaging a metric");
  double sum = 0;
  for (size_t r = 0; r < all.size(); ++r) {
    const auto* bytes = static_cast<const unsigned char*>(all[r].data_ptr());
    if (std::memcmp(bytes + sizeof(double), mine + sizeof(double), kMetricBytes - sizeof(double)))
      fail("metric-disagreement",
           "report_metric('" + metric + "'): rank " + std::to_string(r) +
               " reported another metric at the same call",
           {"every rank calls report_metric with the same metrics in the same order"});
    double v = 0;
    std::memcpy(&v, bytes, sizeof v);
    sum += v;  // rank order, on every rank: the same mean everywhere
  }
  const double mean = sum / static_cast<double>(all.size());
  executor.report(metric, mean);
  return mean;
}

void agree_on_plan(c10d::ProcessGroup& group, const Executor& executor,
                   const AgreementOptions& options) {
  const CompiledPlan& plan = PlanAccess::compiled(executor.plan());
  Time horizon = plan.default_horizon();
  if (options.epochs >= 0) horizon.epoch = options.epochs;
  if (options.steps >= 0) horizon.step = options.steps;

  // Round 1: the fingerprints, and each rank's horizon for the explanation should they differ.
  unsigned char header[kHeaderBytes] = {};
  PlanDigest mine = plan_digest(plan);
  std::memcpy(header, mine.data(), kPlanDigestBytes);
  std::memcpy(header + kPlanDigestBytes, &horizon.epoch, sizeof(int64_t));
  std::memcpy(header + kPlanDigestBytes + sizeof(int64_t), &horizon.step, sizeof(int64_t));
  auto headers = all_gather(group, bytes_tensor(header, kHeaderBytes), "agreeing on the plan");
  std::vector<PlanDigest> digests(headers.size());
  Time common = horizon;
  for (size_t r = 0; r < headers.size(); ++r) {
    const auto* p = headers[r].data_ptr<uint8_t>();
    std::memcpy(digests[r].data(), p, kPlanDigestBytes);
    Time h;
    std::memcpy(&h.epoch, p + kPlanDigestBytes, sizeof(int64_t));
    std::memcpy(&h.step, p + kPlanDigestBytes + sizeof(int64_t), sizeof(int64_t));
    common.epoch = std::max(common.epoch, h.epoch);
    common.step = std::max(common.step, h.step);
  }
  if (disagreeing_ranks(digests).empty()) return;

  // Round 2 (every rank saw the same digests, so every rank is here): the full records over a
  // common horizon, padded to the longest.
  const std::string record = plan_record(plan, common);
  int64_t len = static_cast<int64_t>(record.size());
  auto lens = all_gather(group, bytes_tensor(&len, sizeof len), "exchanging plan records");
  int64_t longest = 0;
  std::vector<int64_t> sizes;
  for (const auto& t : lens) {
    int64_t n;
    std::memcpy(&n, t.data_ptr(), sizeof n);
    sizes.push_back(n);
    longest = std::max(longest, n);
  }
  at::Tensor padded = at::zeros({longest}, at::kByte);
  std::memcpy(padded.data_ptr(), record.data(), record.size());
  auto all = all_gather(group, padded, "exchanging plan records");
  std::vector<std::string> records;
  for (size_t r = 0; r < all.size(); ++r)
    records.emplace_back(static_cast<const char*>(all[r].data_ptr()),
                         static_cast<size_t>(sizes[r]));
  Disagreement d = explain_disagreement(digests, records);
  d.notes.insert(d.notes.begin(), "this is rank " + std::to_string(group.getRank()) + " of " +
                                      std::to_string(group.getSize()));
  fail("plan-disagreement", d.message, d.notes);
}

}  // namespace layerfreeze::distributed
