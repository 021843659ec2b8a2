// Writer -> reader round trips: every value type, arrays of every element type, tensors of several
// block types with their bytes back exactly, at alignments 32 and 64 and versions 2 and 3.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "core/error.h"
#include "formats/gguf/gguf.h"

using namespace tern;
using namespace tern::gguf;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Little-endian builder for hand-made images, for element types the Writer has no setter for.
struct Raw {
  std::vector<uint8_t> b;
  template <typename T>
  Raw& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Raw& str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  template <typename T>
  Raw& array(std::string_view key, ValueType et, std::vector<T> xs) {
    str(key).put<uint32_t>(9).put<uint32_t>(static_cast<uint32_t>(et)).put<uint64_t>(xs.size());
    for (T x : xs) put<T>(x);
    return *this;
  }
};

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> ne;
};

const std::vector<TensorSpec> kTensors = {
    {"token_embd.weight", DType::F32, {8, 3}},
    {"blk.0.attn_norm.weight", DType::F16, {16, 2}},
    {"blk.0.attn_q.weight", DType::Q4_0, {64, 2}},
    {"blk.0.ffn_up.weight", DType::Q8_0, {32, 3, 2}},
    {"blk.0.ffn_down.weight", DType::Q4_K, {256, 2}},
    {"output.weight", DType::Q8_0, {32, 1, 1, 2}},
};

size_t spec_bytes(const TensorSpec& t) {
  int64_t rows = 1;
  for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
  return row_bytes(t.dtype, t.ne[0]) * static_cast<size_t>(rows);
}

}  // namespace

class WriterRoundTrip : public ::testing::TestWithParam<std::tuple<uint32_t, size_t>> {};

TEST_P(WriterRoundTrip, EveryValueTypeAndTensor) {
  const auto [version, alignment] = GetParam();
  Writer w(version, alignment);
  w.set_string("general.architecture", "llama");
  w.set_u8("t.u8", 250);
  w.set_i8("t.i8", -100);
  w.set_u16("t.u16", 65000);
  w.set_i16("t.i16", -32000);
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", std::numeric_limits<uint64_t>::max());
  w.set_i64("t.i64", std::numeric_limits<int64_t>::min());
  w.set_f32("t.f32", 0.1f);
  w.set_f64("t.f64", -1.0 / 3.0);
  w.set_bool("t.true", true);
  w.set_bool("t.false", false);
  w.set_string("t.empty", "");
  w.set_string("t.utf8", "h\xc3\xa9llo\n\"world\"");
  w.set_string_array("t.strs", {"a", "", "ccc", std::string("nul\0in", 6)});
  w.set_f32_array("t.f32s", {1.5f, -2.0f, 1e-30f});
  w.set_i32_array("t.i32s", {1, -2, 2147483647});
  w.set_i32_array("t.empty_arr", {});
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < kTensors.size(); ++i) {
    data.push_back(random_bytes(spec_bytes(kTensors[i]), static_cast<uint32_t>(i)));
    w.add_tensor(kTensors[i].name, kTensors[i].dtype, kTensors[i].ne, data.back().data(), data.back().size());
  }
  const std::vector<uint8_t> img = w.to_bytes();
  const File f = File::from_bytes(img, "rt.gguf");

  EXPECT_EQ(f.version(), version);
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.file_size(), img.size());
  EXPECT_EQ(img.size() % alignment, 0u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.type_of("t.u8"), ValueType::U8);
  EXPECT_EQ(f.get_uint("t.u8"), 250u);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 65000);
  EXPECT_EQ(f.get_int("t.i16"), -32000);
  EXPECT_EQ(f.get_uint("t.u32"), 4000000000u);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_uint("t.u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get_int("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_float("t.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(f.get_float("t.f64"), -1.0 / 3.0);
  EXPECT_TRUE(f.get_bool("t.true"));
  EXPECT_FALSE(f.get_bool("t.false"));
  EXPECT_EQ(f.get_string("t.empty"), "");
  EXPECT_EQ(f.get_string("t.utf8"), "h\xc3\xa9llo\n\"world\"");
  const auto strs = f.get_string_array("t.strs");
  ASSERT_EQ(strs.size(), 4u);
  EXPECT_EQ(strs[2], "ccc");
  EXPECT_EQ(strs[3], std::string_view("nul\0in", 6));
  EXPECT_EQ(f.array_type("t.f32s"), ValueType::F32);
  EXPECT_EQ(f.get_float_array("t.f32s"), (std::vector<double>{1.5, -2.0, static_cast<double>(1e-30f)}));
  EXPECT_EQ(f.get_int_array("t.i32s"), (std::vector<int64_t>{1, -2, 2147483647}));
  EXPECT_EQ(f.array_size("t.empty_arr"), 0u);
  EXPECT_TRUE(f.get_int_array("t.empty_arr").empty());

  // Metadata comes back in insertion order (general.alignment first when the Writer added it).
  const auto& keys = f.keys();
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys.back(), "t.empty_arr");
  EXPECT_EQ(f.has("general.alignment"), alignment != 32);

  ASSERT_EQ(f.tensors().size(), kTensors.size());
  for (size_t i = 0; i < kTensors.size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, kTensors[i].name);
    EXPECT_EQ(t.dtype, kTensors[i].dtype);
    EXPECT_EQ(t.ndim, static_cast<int>(kTensors[i].ne.size()));
    for (size_t d = 0; d < 4; ++d) EXPECT_EQ(t.ne[d], d < kTensors[i].ne.size() ? kTensors[i].ne[d] : 1);
    EXPECT_EQ(t.nbytes, data[i].size());
    EXPECT_EQ(t.offset % alignment, 0u);
    ASSERT_NE(t.data, nullptr);
    EXPECT_EQ(std::memcmp(t.data, data[i].data(), data[i].size()), 0);
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  // Each tensor's bytes also sit at an aligned position of the image itself.
  for (size_t i = 0; i < kTensors.size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    const size_t last_end = f.tensors().back().offset + (data.back().size() + alignment - 1) / alignment * alignment;
    const size_t pos = img.size() - last_end + t.offset;  // data section start + offset
    EXPECT_EQ(pos % alignment, 0u);
    EXPECT_EQ(std::memcmp(img.data() + pos, data[i].data(), data[i].size()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Gguf, WriterRoundTrip,
                         ::testing::Combine(::testing::Values(2u, 3u), ::testing::Values(size_t{32}, size_t{64})));

// Arrays of every element type, from a hand-built image, read back and then copied through the
// Writer with copy_key (which copies the validated bytes verbatim).
TEST(GgufWriter, ArraysOfEveryElementTypeAndCopyKey) {
  Raw r;
  r.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(13);
  r.array<uint8_t>("a.u8", ValueType::U8, {0, 255});
  r.array<int8_t>("a.i8", ValueType::I8, {-128, 127});
  r.array<uint16_t>("a.u16", ValueType::U16, {0, 65535});
  r.array<int16_t>("a.i16", ValueType::I16, {-32768, 7});
  r.array<uint32_t>("a.u32", ValueType::U32, {7, 4294967295u});
  r.array<int32_t>("a.i32", ValueType::I32, {-1});
  r.array<uint64_t>("a.u64", ValueType::U64, {1, 2, 3});
  r.array<int64_t>("a.i64", ValueType::I64, {std::numeric_limits<int64_t>::min()});
  r.array<float>("a.f32", ValueType::F32, {0.25f});
  r.array<double>("a.f64", ValueType::F64, {1e300, -0.5});
  r.array<uint8_t>("a.bool", ValueType::BOOL, {1, 0, 1});
  r.str("a.str").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("x").str("yz");
  r.array<uint64_t>("a.big", ValueType::U64, {std::numeric_limits<uint64_t>::max()});

  const File src = File::from_bytes(r.b, "raw.gguf");
  EXPECT_EQ(src.get_int_array("a.u8"), (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(src.get_int_array("a.i8"), (std::vector<int64_t>{-128, 127}));
  EXPECT_EQ(src.get_int_array("a.u16"), (std::vector<int64_t>{0, 65535}));
  EXPECT_EQ(src.get_int_array("a.i16"), (std::vector<int64_t>{-32768, 7}));
  EXPECT_EQ(src.get_int_array("a.u32"), (std::vector<int64_t>{7, 4294967295}));
  EXPECT_EQ(src.get_int_array("a.i32"), (std::vector<int64_t>{-1}));
  EXPECT_EQ(src.get_int_array("a.u64"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(src.get_int_array("a.i64"), (std::vector<int64_t>{std::numeric_limits<int64_t>::min()}));
  EXPECT_EQ(src.get_float_array("a.f32"), (std::vector<double>{0.25}));
  EXPECT_EQ(src.get_float_array("a.f64"), (std::vector<double>{1e300, -0.5}));
  EXPECT_EQ(src.array_type("a.bool"), ValueType::BOOL);
  EXPECT_EQ(src.array_size("a.bool"), 3u);
  EXPECT_EQ(src.get_string_array("a.str"), (std::vector<std::string_view>{"x", "yz"}));
  EXPECT_THROW(src.get_int_array("a.big"), Error);  // does not fit in int64
  EXPECT_EQ(src.value_to_string("a.u8"), "[0, 255]");
  EXPECT_EQ(src.value_to_string("a.str"), "[\"x\", \"yz\"]");
  EXPECT_EQ(src.value_to_string("a.u64", 2), "[1, 2, ... (3 u64 items)]");

  Writer w;
  for (const auto& k : src.keys()) w.copy_key(src, k);
  const std::vector<uint8_t> out = w.to_bytes();
  // Same metadata, no tensors: the copy is the source image plus padding to the alignment.
  ASSERT_GE(out.size(), r.b.size());
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + static_cast<long>(r.b.size())), r.b);
  const File copy = File::from_bytes(out, "copy.gguf");
  EXPECT_EQ(copy.keys(), src.keys());
  for (const auto& k : src.keys()) EXPECT_EQ(copy.value_to_string(k, 100), src.value_to_string(k, 100)) << k;
}

TEST(GgufWriter, ScalarGetterConversions) {
  Writer w;
  w.set_u64("big", std::numeric_limits<uint64_t>::max());
  w.set_i32("neg", -5);
  w.set_u8("small", 7);
  w.set_f32("f", 2.5f);
  w.set_string("s", "v");
  w.set_bool("b", true);
  const File f = File::from_bytes(w.to_bytes(), "conv.gguf");
  EXPECT_EQ(f.get_int("small"), 7);
  EXPECT_EQ(f.get_uint("small"), 7u);
  EXPECT_EQ(f.get_int("neg"), -5);
  EXPECT_THROW(f.get_uint("neg"), Error);
  EXPECT_THROW(f.get_int("big"), Error);
  EXPECT_THROW(f.get_float("small"), Error);
  EXPECT_THROW(f.get_int("b"), Error);
  EXPECT_EQ(*f.find_int("small"), 7);
  EXPECT_FALSE(f.find_int("absent").has_value());
  EXPECT_FALSE(f.find_string("absent").has_value());
  EXPECT_EQ(*f.find_string("s"), "v");
  EXPECT_EQ(*f.find_bool("b"), true);
  EXPECT_EQ(*f.find_float("f"), 2.5);
  EXPECT_THROW(f.find_string("small"), Error);  // present with the wrong type is still an error
  EXPECT_EQ(f.value_to_string("f"), "2.5");
  EXPECT_EQ(f.value_to_string("b"), "true");
  EXPECT_EQ(f.value_to_string("s"), "\"v\"");
  EXPECT_EQ(f.value_to_string("neg"), "-5");
}

TEST(GgufWriter, SettingAKeyAgainReplacesItInPlace) {
  Writer w;
  w.set_u32("a", 1);
  w.set_u32("b", 2);
  w.set_string("a", "x");
  const File f = File::from_bytes(w.to_bytes(), "replace.gguf");
  EXPECT_EQ(f.keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.get_string("a"), "x");
}

TEST(GgufWriter, RejectsBadInput) {
  EXPECT_THROW(Writer(1), Error);
  EXPECT_THROW(Writer(3, 48), Error);
  Writer w;
  const std::vector<uint8_t> buf(1024);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, buf.data(), 15), Error);  // wrong byte count
  EXPECT_THROW(w.add_tensor("t", DType::Q4_0, {16}, buf.data(), 9), Error);  // partial block
  EXPECT_THROW(w.add_tensor("", DType::F32, {4}, buf.data(), 16), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}, buf.data(), 0), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}, buf.data(), 4), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4, 0}, buf.data(), 0), Error);
  EXPECT_THROW(w.add_tensor(std::string(65, 'n'), DType::F32, {4}, buf.data(), 16), Error);
  w.add_tensor("t", DType::F32, {4}, buf.data(), 16);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, buf.data(), 16), Error);  // duplicate
  EXPECT_THROW(w.set_u32("general.alignment", 64), Error);  // disagrees with the Writer's 32
  EXPECT_THROW(w.set_u64("general.alignment", 32), Error);  // wrong type
  EXPECT_THROW(w.set_u32("", 1), Error);
}

TEST(GgufWriter, WriteRenamesIntoPlaceAndOpens) {
  const auto dir = std::filesystem::temp_directory_path() / ("tern_gguf_writer_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "m.gguf").string();
  Writer w(3, 64);
  w.set_string("general.architecture", "llama");
  const auto data = random_bytes(row_bytes(DType::Q4_K, 512), 9);
  w.add_tensor("w", DType::Q4_K, {512}, data.data(), data.size());
  w.write(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  {
    const File f = File::open(path);
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(f.alignment(), 64u);
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(std::memcmp(f.tensors()[0].data, data.data(), data.size()), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensors()[0].data) % 64, 0u);  // mmap is page aligned
  }
  EXPECT_THROW(w.write((dir / "no_such_dir" / "m.gguf").string()), Error);
  std::filesystem::remove_all(dir);
}

// Declared tensors are produced by a TensorSource while the file is written: the file is
// byte-identical to one built from in-memory data, and a source that throws leaves no file behind.
TEST(GgufWriter, DeclaredTensorsStreamFromASource) {
  const auto dir = std::filesystem::temp_directory_path() / ("tern_gguf_stream_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto a = random_bytes(row_bytes(DType::Q8_0, 64) * 3, 1);
  const auto b = random_bytes(row_bytes(DType::F32, 5), 2);  // 20 bytes: padding follows
  const auto c = random_bytes(row_bytes(DType::Q4_K, 256) * 2, 3);
  Writer in_memory(3, 64), streamed(3, 64);
  for (Writer* w : {&in_memory, &streamed}) w->set_string("general.architecture", "llama");
  in_memory.add_tensor("a", DType::Q8_0, {64, 3}, a.data(), a.size());
  in_memory.add_tensor("b", DType::F32, {5}, b.data(), b.size());
  in_memory.add_tensor("c", DType::Q4_K, {256, 2}, c.data(), c.size());
  streamed.declare_tensor("a", DType::Q8_0, {64, 3});
  streamed.add_tensor("b", DType::F32, {5}, b.data(), b.size());
  streamed.declare_tensor("c", DType::Q4_K, {256, 2});
  EXPECT_THROW(streamed.to_bytes(), Error);
  EXPECT_THROW(streamed.declare_tensor("a", DType::F32, {4}), Error);  // duplicate name
  EXPECT_THROW(streamed.declare_tensor("d", DType::Q8_0, {48}), Error);  // not whole blocks

  const std::string path = (dir / "s.gguf").string();
  EXPECT_THROW(streamed.write(path), Error);  // declared tensors need a source
  std::vector<size_t> asked;
  streamed.write(path, [&](size_t i, std::span<uint8_t> out) {
    asked.push_back(i);
    const auto& src = i == 0 ? a : c;
    ASSERT_EQ(out.size(), src.size());
    std::memcpy(out.data(), src.data(), src.size());
  });
  EXPECT_EQ(asked, (std::vector<size_t>{0, 2}));
  const auto expected = in_memory.to_bytes();
  ASSERT_EQ(std::filesystem::file_size(path), expected.size());
  {
    const File f = File::open(path);
    ASSERT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(std::memcmp(f.tensors()[2].data, c.data(), c.size()), 0);
    std::vector<uint8_t> got(expected.size());
    std::FILE* fp = std::fopen(path.c_str(), "rb");
    ASSERT_NE(fp, nullptr);
    ASSERT_EQ(std::fread(got.data(), 1, got.size(), fp), got.size());
    std::fclose(fp);
    EXPECT_EQ(got, expected);
  }

  const std::string failed = (dir / "failed.gguf").string();
  EXPECT_THROW(streamed.write(failed, [](size_t, std::span<uint8_t>) { fail("source broke"); }), Error);
  EXPECT_FALSE(std::filesystem::exists(failed));
  EXPECT_FALSE(std::filesystem::exists(failed + ".tmp"));
  std::filesystem::remove_all(dir);
}
