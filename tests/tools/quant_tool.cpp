// Row conversion CLI for the Python parity test (tests/python/test_quant_parity.py):
//   quant_tool dequant TYPE IN.bin OUT.f32   raw blocks of TYPE -> little-endian f32
//   quant_tool quant TYPE IN.f32 OUT.bin     f32 -> raw blocks of TYPE (reference rounding, no weights)
// TYPE is llama.cpp's name ("q4_0", "q6_k", "bf16"). The whole file is one row.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/quant.h"

namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  TERN_CHECK(f.good(), "cannot open {}", path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const void* data, size_t bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  TERN_CHECK(f.good(), "cannot write {}", path);
}

int run(int argc, char** argv) {
  TERN_CHECK(argc == 5, "usage: quant_tool dequant|quant TYPE IN OUT");
  const std::string mode = argv[1];
  const auto type = tern::dtype_from_name(argv[2]);
  TERN_CHECK(type.has_value(), "unknown type {}", argv[2]);
  const auto& tr = tern::traits(*type);
  const std::vector<char> in = read_file(argv[3]);
  if (mode == "dequant") {
    TERN_CHECK(in.size() % tr.block_bytes == 0, "{}: {} bytes is not a whole number of blocks", tr.name,
               in.size());
    const int64_t n = static_cast<int64_t>(in.size() / tr.block_bytes) * tr.block_elems;
    std::vector<float> out(static_cast<size_t>(n));
    tern::quant::dequantize_row(*type, in.data(), out.data(), n);
    write_file(argv[4], out.data(), out.size() * sizeof(float));
  } else if (mode == "quant") {
    TERN_CHECK(in.size() % sizeof(float) == 0, "input is not f32");
    const int64_t n = static_cast<int64_t>(in.size() / sizeof(float));
    std::vector<float> src(static_cast<size_t>(n));
    std::memcpy(src.data(), in.data(), in.size());
    std::vector<char> out(tern::row_bytes(*type, n));
    tern::quant::quantize_row(*type, src.data(), out.data(), n);
    write_file(argv[4], out.data(), out.size());
  } else {
    tern::fail("unknown mode {}", mode);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const tern::Error& e) {
    std::fprintf(stderr, "quant_tool: %s\n", e.what());
    return 1;
  }
}
