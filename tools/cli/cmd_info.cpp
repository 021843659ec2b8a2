// tern info: metadata, the tensor table and a memory estimate for a GGUF file.
#include <fmt/format.h>

#include <cstdio>
#include <map>

#include "common.h"
#include "core/error.h"
#include "formats/gguf/gguf.h"

namespace tern::cli {
namespace {

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return fmt::format("{:.2f} {}", bytes, units[u]);
}

void info(const std::string& path, bool all_tensors, int ctx) {
  const auto f = gguf::File::open(path);
  fmt::print("file: {}\nGGUF version {}, {} metadata keys, {} tensors, {}\n\nmetadata:\n", path, f.version(),
             f.keys().size(), f.tensors().size(), human(static_cast<double>(f.file_size())));
  for (const auto& k : f.keys()) fmt::print("  {:<44} = {}\n", k, f.value_to_string(k));
  fmt::print("\ntensors:\n  {:<36} {:<6} {:<24} {:>12}\n", "name", "type", "shape", "bytes");
  std::map<std::string, std::pair<size_t, size_t>> by_type;  // type -> (count, bytes)
  size_t total = 0, shown = 0;
  for (const auto& t : f.tensors()) {
    auto& bt = by_type[std::string(dtype_name(t.dtype))];
    ++bt.first;
    bt.second += t.nbytes;
    total += t.nbytes;
    if (!all_tensors && shown >= 24) continue;
    ++shown;
    std::string shape = fmt::format("{}", t.ne[0]);
    for (int d = 1; d < t.ndim; ++d) shape += fmt::format(" x {}", t.ne[d]);
    fmt::print("  {:<36} {:<6} {:<24} {:>12}\n", t.name, dtype_name(t.dtype), shape, t.nbytes);
  }
  if (shown < f.tensors().size()) fmt::print("  ... {} more (--all to list them)\n", f.tensors().size() - shown);
  fmt::print("\nby type:\n");
  for (const auto& [type, cb] : by_type) fmt::print("  {:<6} {:>5} tensors  {}\n", type, cb.first, human(static_cast<double>(cb.second)));

  // Memory estimate for running it: weights (mmapped) + F16 KV cache at the context + workspace.
  const auto arch = f.find_string("general.architecture");
  if (!arch) return;
  const std::string a(*arch);
  auto get = [&](const std::string& k, int64_t dflt) { return f.find_int(a + "." + k).value_or(dflt); };
  const int64_t n_layer = get("block_count", 0), n_embd = get("embedding_length", 0), n_head = get("attention.head_count", 1);
  const int64_t n_kv = get("attention.head_count_kv", n_head), head_dim = get("attention.key_length", n_head ? n_embd / n_head : 0);
  const int64_t n_ctx = ctx > 0 ? ctx : std::min<int64_t>(get("context_length", 4096), 4096);
  const double kv = 2.0 * n_layer * n_kv * head_dim * n_ctx * 2;
  fmt::print("\nmemory estimate at context {}: weights {} + KV cache (f16) {} = {}\n", n_ctx, human(static_cast<double>(total)),
             human(kv), human(static_cast<double>(total) + kv));
  fmt::print("KV cache per token (f16): {} bytes\n", 2 * 2 * n_layer * n_kv * head_dim);
}

}  // namespace

void register_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  auto ctx = std::make_shared<int>(0);
  CLI::App* cmd = app.add_subcommand("info", "print a GGUF file's metadata, tensors and memory estimate");
  cmd->add_option("file", *path, "GGUF file")->required();
  cmd->add_flag("--all", *all, "list every tensor");
  cmd->add_option("-c,--ctx-size", *ctx, "context for the memory estimate")->check(CLI::Range(0, 1 << 20));
  cmd->callback([=] { info(*path, *all, *ctx); });
}

}  // namespace tern::cli
