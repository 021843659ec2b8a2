// The reader against bad input: a table of precisely corrupted images (each must fail with a message
// naming the file and the field), truncation at every length, byte-flip and random mutations (none
// may crash; run under ASan/UBSan), file-system errors, and the real default model when present.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

#include "core/error.h"
#include "formats/gguf/gguf.h"

using namespace tern;
using namespace tern::gguf;

namespace {

using Bytes = std::vector<uint8_t>;

// A valid image whose every field we can find again by searching for its (unique) key or name.
// The last tensor is 32 bytes so that the image ends exactly where the last tensor's data does.
Bytes base_image() {
  Writer w;
  w.set_u32("general.alignment", 32);
  w.set_u32("llama.context_length", 2048);
  w.set_bool("flag.bool", true);
  w.set_f32_array("arr.f32", {1.0f, 2.0f, 3.0f});
  w.set_u32("dup.aaa", 1);
  w.set_u32("dup.bbb", 2);
  w.set_string("general.architecture", "llama");
  w.set_string_array("tokenizer.ggml.tokens", {"<s>", "hello", "world"});
  std::vector<uint8_t> data(1024);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  w.add_tensor("blk.0.q8", DType::Q8_0, {32, 2}, data.data(), 68);
  w.add_tensor("blk.0.q4k", DType::Q4_K, {256, 1}, data.data(), 144);
  w.add_tensor("tok.aaa", DType::F32, {8, 2}, data.data(), 64);
  w.add_tensor("tok.bbb", DType::F32, {8, 1}, data.data(), 32);
  return w.to_bytes();
}

size_t find(const Bytes& img, std::string_view s) {
  auto it = std::search(img.begin(), img.end(), s.begin(), s.end());
  if (it == img.end()) throw std::logic_error("test bug: '" + std::string(s) + "' not in image");
  return static_cast<size_t>(it - img.begin());
}

template <typename T>
void patch(Bytes& img, size_t pos, T v) {
  if (pos + sizeof(T) > img.size()) throw std::logic_error("test bug: patch out of range");
  std::memcpy(img.data() + pos, &v, sizeof(T));
}

// Positions of a metadata entry's parts.
size_t key_len_at(const Bytes& img, std::string_view key) { return find(img, key) - 8; }
size_t key_type_at(const Bytes& img, std::string_view key) { return find(img, key) + key.size(); }
size_t key_value_at(const Bytes& img, std::string_view key) { return key_type_at(img, key) + 4; }
size_t array_count_at(const Bytes& img, std::string_view key) { return key_value_at(img, key) + 4; }

// Positions of a tensor info's parts (n_dims is read back from the image).
size_t tensor_name_at(const Bytes& img, std::string_view name) { return find(img, name); }
size_t tensor_ndims_at(const Bytes& img, std::string_view name) { return find(img, name) + name.size(); }
size_t tensor_ne_at(const Bytes& img, std::string_view name, int d) { return tensor_ndims_at(img, name) + 4 + 8 * d; }
uint32_t tensor_ndims(const Bytes& img, std::string_view name) {
  uint32_t n;
  std::memcpy(&n, img.data() + tensor_ndims_at(img, name), 4);
  return n;
}
size_t tensor_type_at(const Bytes& img, std::string_view name) {
  return tensor_ne_at(img, name, static_cast<int>(tensor_ndims(img, name)));
}
size_t tensor_offset_at(const Bytes& img, std::string_view name) { return tensor_type_at(img, name) + 4; }
uint64_t tensor_offset(const Bytes& img, std::string_view name) {
  uint64_t o;
  std::memcpy(&o, img.data() + tensor_offset_at(img, name), 8);
  return o;
}
// Data section start: the image is the data section's padded tensors at the end (352 bytes here).
size_t data_start(const Bytes& img) { return img.size() - (96 + 160 + 64 + 32); }

constexpr uint64_t kHuge = uint64_t{1} << 62;

struct Case {
  std::string name;
  std::function<void(Bytes&)> corrupt;
  std::string expect;                        // substring of the error message
  std::function<void(const File&)> use = {};  // for errors raised by getters
};

std::vector<Case> cases() {
  return {
      {"bad magic", [](Bytes& b) { b[0] = 'X'; }, "bad magic"},
      {"version 1", [](Bytes& b) { patch<uint32_t>(b, 4, 1); }, "GGUF version 1 is not supported"},
      {"version 4", [](Bytes& b) { patch<uint32_t>(b, 4, 4); }, "unsupported GGUF version 4"},
      {"version 0", [](Bytes& b) { patch<uint32_t>(b, 4, 0); }, "unsupported GGUF version 0"},
      {"big-endian version", [](Bytes& b) { patch<uint32_t>(b, 4, 0x03000000); }, "big-endian"},
      {"truncated in magic", [](Bytes& b) { b.resize(3); }, "file too short (3 bytes)"},
      {"truncated in version", [](Bytes& b) { b.resize(6); }, "truncated reading version at offset 4"},
      {"truncated in tensor_count", [](Bytes& b) { b.resize(12); }, "truncated reading tensor_count"},
      {"truncated in kv_count", [](Bytes& b) { b.resize(20); }, "truncated reading kv_count"},
      {"truncated in a key", [](Bytes& b) { b.resize(find(b, "dup.bbb") + 2); },
       "metadata key #5: string length 7 exceeds the 2 bytes left"},
      {"truncated in a value type", [](Bytes& b) { b.resize(key_type_at(b, "general.architecture") + 1); },
       "truncated reading metadata 'general.architecture' value type"},
      {"truncated in a string value", [](Bytes& b) { b.resize(key_value_at(b, "general.architecture") + 10); },
       "metadata 'general.architecture': string length 5 exceeds the 2 bytes left"},
      {"truncated early in an array", [](Bytes& b) { b.resize(find(b, "hello") + 2); },
       "metadata 'tokenizer.ggml.tokens': array count 3 exceeds the 21 bytes left"},
      {"truncated in an array element", [](Bytes& b) { b.resize(find(b, "world") + 2); },
       "metadata 'tokenizer.ggml.tokens': string length 5 exceeds the 2 bytes left"},
      {"truncated early in tensor infos", [](Bytes& b) { b.resize(find(b, "blk.0.q4k")); }, "tensor_count 4 is impossible"},
      {"truncated in a tensor dimension", [](Bytes& b) { b.resize(tensor_ne_at(b, "tok.bbb", 1) + 3); },
       "truncated reading tensor 'tok.bbb' ne[1]"},
      {"truncated in a tensor offset", [](Bytes& b) { b.resize(tensor_offset_at(b, "tok.bbb") + 7); },
       "truncated reading tensor 'tok.bbb' offset"},
      {"truncated before the data", [](Bytes& b) { b.resize(data_start(b) - 1); }, "data section would start at"},
      {"truncated in the data", [](Bytes& b) { b.resize(b.size() - 1); },
       "tensor 'tok.bbb': offset 320 + 32 bytes exceeds the data section (351 bytes)"},
      {"huge kv_count", [](Bytes& b) { patch<uint64_t>(b, 16, kHuge); }, "kv_count 4611686018427387904 is impossible"},
      {"huge tensor_count", [](Bytes& b) { patch<uint64_t>(b, 8, kHuge); }, "tensor_count 4611686018427387904 is impossible"},
      {"kv_count one too many", [](Bytes& b) { patch<uint64_t>(b, 16, 9); }, "tensor #"},
      {"huge key length", [](Bytes& b) { patch<uint64_t>(b, key_len_at(b, "dup.aaa"), ~uint64_t{0}); },
       "metadata key #4: string length 18446744073709551615 exceeds"},
      {"huge string length",
       [](Bytes& b) { patch<uint64_t>(b, key_value_at(b, "general.architecture"), ~uint64_t{0}); },
       "metadata 'general.architecture': string length 18446744073709551615 exceeds"},
      {"huge string array count", [](Bytes& b) { patch<uint64_t>(b, array_count_at(b, "tokenizer.ggml.tokens"), kHuge); },
       "metadata 'tokenizer.ggml.tokens': array count 4611686018427387904 exceeds"},
      {"huge f32 array count", [](Bytes& b) { patch<uint64_t>(b, array_count_at(b, "arr.f32"), kHuge); },
       "metadata 'arr.f32': array count 4611686018427387904 exceeds"},
      {"huge string in an array", [](Bytes& b) { patch<uint64_t>(b, find(b, "hello") - 8, kHuge); },
       "metadata 'tokenizer.ggml.tokens': string length 4611686018427387904 exceeds"},
      {"unknown value type", [](Bytes& b) { patch<uint32_t>(b, key_type_at(b, "llama.context_length"), 13); },
       "metadata 'llama.context_length': unknown value type 13"},
      {"unknown array element type", [](Bytes& b) { patch<uint32_t>(b, key_value_at(b, "arr.f32"), 99); },
       "metadata 'arr.f32': unknown array element type 99"},
      {"nested array", [](Bytes& b) { patch<uint32_t>(b, key_value_at(b, "arr.f32"), 9); },
       "metadata 'arr.f32': nested arrays are not supported"},
      {"bool value 2", [](Bytes& b) { b[key_value_at(b, "flag.bool")] = 2; }, "metadata 'flag.bool': bool value 2"},
      {"empty key", [](Bytes& b) { patch<uint64_t>(b, key_len_at(b, "dup.aaa"), 0); }, "metadata key #4 is empty"},
      {"duplicate key", [](Bytes& b) { std::memcpy(b.data() + find(b, "dup.bbb"), "dup.aaa", 7); },
       "duplicate metadata key 'dup.aaa'"},
      {"alignment 0", [](Bytes& b) { patch<uint32_t>(b, key_value_at(b, "general.alignment"), 0); },
       "metadata 'general.alignment' is 0: must be a power of two"},
      {"alignment 3", [](Bytes& b) { patch<uint32_t>(b, key_value_at(b, "general.alignment"), 3); },
       "metadata 'general.alignment' is 3: must be a power of two"},
      {"alignment huge", [](Bytes& b) { patch<uint32_t>(b, key_value_at(b, "general.alignment"), 1u << 31); },
       "metadata 'general.alignment' is 2147483648: must be a power of two from 1 to 1048576"},
      {"alignment wrong type", [](Bytes& b) { patch<uint32_t>(b, key_type_at(b, "general.alignment"), 5); },
       "metadata 'general.alignment' is i32, expected u32"},
      {"alignment 64 misaligns offsets", [](Bytes& b) { patch<uint32_t>(b, key_value_at(b, "general.alignment"), 64); },
       "tensor 'blk.0.q4k': offset 96 is not a multiple of the alignment 64"},
      {"empty tensor name", [](Bytes& b) { patch<uint64_t>(b, tensor_name_at(b, "tok.aaa") - 8, 0); },
       "tensor #2 has an empty name"},
      {"tensor name too long", [](Bytes& b) { patch<uint64_t>(b, tensor_name_at(b, "blk.0.q8") - 8, 65); },
       "tensor #0 name"},
      {"duplicate tensor name", [](Bytes& b) { std::memcpy(b.data() + tensor_name_at(b, "tok.bbb"), "tok.aaa", 7); },
       "duplicate tensor name 'tok.aaa'"},
      {"n_dims 0", [](Bytes& b) { patch<uint32_t>(b, tensor_ndims_at(b, "tok.aaa"), 0); },
       "tensor 'tok.aaa': n_dims 0 is out of range"},
      {"n_dims 5", [](Bytes& b) { patch<uint32_t>(b, tensor_ndims_at(b, "tok.aaa"), 5); },
       "tensor 'tok.aaa': n_dims 5 is out of range"},
      {"negative dimension", [](Bytes& b) { patch<int64_t>(b, tensor_ne_at(b, "tok.aaa", 1), -1); },
       "tensor 'tok.aaa': dimension ne[1] is negative (-1)"},
      {"zero dimension", [](Bytes& b) { patch<int64_t>(b, tensor_ne_at(b, "tok.aaa", 0), 0); },
       "tensor 'tok.aaa': dimension ne[0] is 0"},
      {"element count overflow", [](Bytes& b) { patch<int64_t>(b, tensor_ne_at(b, "blk.0.q8", 1), int64_t{1} << 62); },
       "tensor 'blk.0.q8': element count overflows"},
      {"byte size overflow", [](Bytes& b) { patch<int64_t>(b, tensor_ne_at(b, "tok.aaa", 1), int64_t{1} << 59); },
       "tensor 'tok.aaa': byte size overflows"},
      {"row not a multiple of the block", [](Bytes& b) { patch<int64_t>(b, tensor_ne_at(b, "blk.0.q8", 0), 33); },
       "tensor 'blk.0.q8': row length ne[0]=33 is not a multiple of the q8_0 block size 32"},
      {"unknown tensor type", [](Bytes& b) { patch<uint32_t>(b, tensor_type_at(b, "blk.0.q8"), 4); },
       "unsupported tensor type 4 for tensor 'blk.0.q8'"},
      {"huge tensor type", [](Bytes& b) { patch<uint32_t>(b, tensor_type_at(b, "tok.aaa"), 0xffffffffu); },
       "unsupported tensor type 4294967295 for tensor 'tok.aaa'"},
      {"type change makes data too big",
       [](Bytes& b) { patch<uint32_t>(b, tensor_type_at(b, "tok.bbb"), static_cast<uint32_t>(DType::F64)); },
       "tensor 'tok.bbb': offset 320 + 64 bytes exceeds the data section (352 bytes)"},
      {"misaligned offset",
       [](Bytes& b) { patch<uint64_t>(b, tensor_offset_at(b, "tok.aaa"), tensor_offset(b, "tok.aaa") + 1); },
       "tensor 'tok.aaa': offset 257 is not a multiple of the alignment 32"},
      {"offset past the end", [](Bytes& b) { patch<uint64_t>(b, tensor_offset_at(b, "tok.bbb"), uint64_t{1} << 40); },
       "tensor 'tok.bbb': offset 1099511627776 + 32 bytes exceeds the data section (352 bytes)"},
      {"offset + size wraps around", [](Bytes& b) { patch<uint64_t>(b, tensor_offset_at(b, "tok.bbb"), ~uint64_t{31}); },
       "tensor 'tok.bbb': offset 18446744073709551584 + 32 bytes exceeds the data section"},
      {"identical offsets overlap",
       [](Bytes& b) { patch<uint64_t>(b, tensor_offset_at(b, "tok.bbb"), tensor_offset(b, "tok.aaa")); }, "overlaps"},
      {"partial overlap", [](Bytes& b) { patch<uint64_t>(b, tensor_offset_at(b, "blk.0.q4k"), 64); },
       "tensor 'blk.0.q4k' (data bytes 64..208) overlaps tensor 'blk.0.q8' (data bytes 0..68)"},
      {"getter type mismatch", [](Bytes&) {}, "metadata 'general.architecture' is string, expected integer",
       [](const File& f) { f.get_int("general.architecture"); }},
      {"array getter type mismatch", [](Bytes&) {}, "metadata 'arr.f32' is array of f32, expected array of string",
       [](const File& f) { f.get_string_array("arr.f32"); }},
      {"array_size of a scalar", [](Bytes&) {}, "metadata 'dup.aaa' is u32, expected array",
       [](const File& f) { f.array_size("dup.aaa"); }},
      {"missing key", [](Bytes&) {}, "missing metadata 'llama.rope.dimension_count'",
       [](const File& f) { f.get_uint("llama.rope.dimension_count"); }},
      {"type_of missing key", [](Bytes&) {}, "missing metadata 'nope'", [](const File& f) { f.type_of("nope"); }},
  };
}

}  // namespace

TEST(GgufReader, BaseImageIsValid) {
  const File f = File::from_bytes(base_image(), "base.gguf");
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.tensors().back().offset + f.tensors().back().nbytes + data_start(base_image()), f.file_size());
}

TEST(GgufReader, MalformedFilesFailWithNamedFields) {
  const auto all = cases();
  EXPECT_GE(all.size(), 30u);
  for (const Case& c : all) {
    SCOPED_TRACE(c.name);
    Bytes img = base_image();
    c.corrupt(img);
    try {
      const File f = File::from_bytes(std::move(img), "bad.gguf");
      if (c.use) c.use(f);
      ADD_FAILURE() << "no error for case '" << c.name << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
      EXPECT_NE(msg.find(c.expect), std::string::npos) << "message: " << msg << "\nexpected: " << c.expect;
    }
  }
}

TEST(GgufReader, EveryTruncationFailsCleanly) {
  const Bytes img = base_image();
  for (size_t n = 0; n <= img.size(); ++n) {
    Bytes cut(img.begin(), img.begin() + static_cast<long>(n));
    if (n == img.size()) {
      EXPECT_NO_THROW(File::from_bytes(std::move(cut), "cut.gguf"));
    } else {
      EXPECT_THROW(File::from_bytes(std::move(cut), "cut.gguf"), Error) << "length " << n;
    }
  }
}

// Each single-byte change either still parses or throws tern::Error; run under ASan/UBSan this is a
// small deterministic fuzzer over the header.
TEST(GgufReader, ByteFlipsAndRandomMutationsNeverCrash) {
  const Bytes img = base_image();
  const size_t header_end = data_start(img);
  auto try_parse = [](Bytes b) {
    try {
      const File f = File::from_bytes(std::move(b), "mut.gguf");
      for (const auto& k : f.keys()) (void)f.value_to_string(k);
      for (const auto& t : f.tensors()) ASSERT_LE(t.nbytes + t.offset, f.file_size());
    } catch (const Error&) {
    }
  };
  for (size_t i = 0; i < header_end; ++i)
    for (uint8_t x : {0x01, 0x80, 0xff}) {
      Bytes b = img;
      b[i] ^= x;
      try_parse(std::move(b));
    }
  std::mt19937 rng(1234);
  for (int it = 0; it < 20000; ++it) {
    Bytes b = img;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) b[rng() % header_end] = static_cast<uint8_t>(rng());
    if (rng() % 4 == 0) b.resize(rng() % b.size());
    try_parse(std::move(b));
  }
}

TEST(GgufReader, FileSystemErrors) {
  const auto dir = std::filesystem::temp_directory_path() / ("tern_gguf_reader_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto expect_error = [](const std::string& path, const std::string& what) {
    try {
      File::open(path);
      ADD_FAILURE() << "no error for " << path;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error((dir / "absent.gguf").string(), "cannot open: No such file or directory");
  expect_error(dir.string(), "is a directory");
  const auto write = [&](const std::string& name, const Bytes& b) {
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                      static_cast<std::streamsize>(b.size()));
    return (dir / name).string();
  };
  expect_error(write("empty.gguf", {}), "empty file");
  expect_error(write("short.gguf", {'G', 'G'}), "file too short");
  expect_error(write("text.gguf", {'h', 'e', 'l', 'l', 'o'}), "bad magic");
  const File f = File::open(write("ok.gguf", base_image()));
  EXPECT_EQ(f.tensors().size(), 4u);
  std::filesystem::remove_all(dir);
}

TEST(GgufReader, RealSmolLM2) {
  const std::string path = std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") +
                           "/.cache/tern/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model file absent: " << path << " (see DESIGN.md, Models)";
  const File f = File::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_GE(f.tensors().size(), 250u);
  EXPECT_LE(f.tensors().size(), 300u);
  EXPECT_EQ(f.array_type("tokenizer.ggml.tokens"), ValueType::STRING);
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens.size(), 49152u);
  EXPECT_EQ(f.get_uint("llama.context_length"), 8192u);
  const TensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne[1], 49152);
  for (const auto& t : f.tensors()) EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % f.alignment(), 0u) << t.name;
}
