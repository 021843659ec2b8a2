// GGUF writer: metadata in insertion order, tensor infos, then tensor data each padded to the
// alignment (ggml pads after every tensor, the last included, and so do we).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/ranges.h>

#include "core/error.h"
#include "formats/gguf/gguf.h"

namespace tern::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;
constexpr size_t kMaxTensorName = 64;  // same bound as the reader

// Little-endian append helpers (the reader's static_assert covers the host byte order).
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  // resize + memcpy rather than insert: GCC 12 warns falsely (-Wstringop-overflow) on the latter.
  const size_t n = out.size();
  out.resize(n + sizeof(T));
  std::memcpy(out.data() + n, &v, sizeof(T));
}

void put_str(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void pad_to(std::vector<uint8_t>& out, size_t alignment) {
  out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
}

}  // namespace

struct Writer::Kv {
  std::string key;
  ValueType type;
  std::vector<uint8_t> payload;  // the value as stored after its type field
};

struct Writer::Tensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> ne;
  size_t nbytes;
  bool declared;               // bytes come from write()'s TensorSource, not `data`
  std::vector<uint8_t> data;   // empty when declared
};

Writer::Writer(uint32_t version, size_t alignment) : version_(version), alignment_(alignment) {
  TERN_CHECK(version == 2 || version == 3, "gguf writer: version {} is not supported (2 or 3)", version);
  TERN_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0 && alignment <= (size_t{1} << 20),
             "gguf writer: alignment {} must be a power of two from 1 to 1 MiB", alignment);
  // Readers assume 32 unless told; say so in the file whenever we use anything else.
  if (alignment != 32) set_u32("general.alignment", static_cast<uint32_t>(alignment));
}

void Writer::add_kv(std::shared_ptr<Kv> kv) {
  TERN_CHECK(!kv->key.empty(), "gguf writer: empty metadata key");
  if (kv->key == "general.alignment") {
    uint32_t a = 0;
    if (kv->type == ValueType::U32) std::memcpy(&a, kv->payload.data(), 4);
    TERN_CHECK(kv->type == ValueType::U32 && a == alignment_,
               "gguf writer: general.alignment must be the u32 {} given to the Writer", alignment_);
  }
  // Setting a key again replaces its value in place, so callers can copy then override.
  for (auto& existing : kvs_)
    if (existing->key == kv->key) {
      existing = std::move(kv);
      return;
    }
  kvs_.push_back(std::move(kv));
}

#define TERN_GGUF_SETTER(fn, T, VT)                                          \
  void Writer::fn(std::string key, T v) {                                    \
    std::vector<uint8_t> p;                                                  \
    put<T>(p, v);                                                            \
    add_kv(std::make_shared<Kv>(Kv{std::move(key), ValueType::VT, std::move(p)})); \
  }
TERN_GGUF_SETTER(set_u8, uint8_t, U8)
TERN_GGUF_SETTER(set_i8, int8_t, I8)
TERN_GGUF_SETTER(set_u16, uint16_t, U16)
TERN_GGUF_SETTER(set_i16, int16_t, I16)
TERN_GGUF_SETTER(set_u32, uint32_t, U32)
TERN_GGUF_SETTER(set_i32, int32_t, I32)
TERN_GGUF_SETTER(set_u64, uint64_t, U64)
TERN_GGUF_SETTER(set_i64, int64_t, I64)
TERN_GGUF_SETTER(set_f32, float, F32)
TERN_GGUF_SETTER(set_f64, double, F64)
#undef TERN_GGUF_SETTER

void Writer::set_bool(std::string key, bool v) {
  std::vector<uint8_t> p{static_cast<uint8_t>(v ? 1 : 0)};
  add_kv(std::make_shared<Kv>(Kv{std::move(key), ValueType::BOOL, std::move(p)}));
}

void Writer::set_string(std::string key, std::string v) {
  std::vector<uint8_t> p;
  put_str(p, v);
  add_kv(std::make_shared<Kv>(Kv{std::move(key), ValueType::STRING, std::move(p)}));
}

void Writer::set_string_array(std::string key, std::vector<std::string> v) {
  std::vector<uint8_t> p;
  put<uint32_t>(p, static_cast<uint32_t>(ValueType::STRING));
  put<uint64_t>(p, v.size());
  for (const auto& s : v) put_str(p, s);
  add_kv(std::make_shared<Kv>(Kv{std::move(key), ValueType::ARRAY, std::move(p)}));
}

void Writer::set_f32_array(std::string key, std::vector<float> v) {
  std::vector<uint8_t> p;
  put<uint32_t>(p, static_cast<uint32_t>(ValueType::F32));
  put<uint64_t>(p, v.size());
  for (float x : v) put<float>(p, x);
  add_kv(std::make_shared<Kv>(Kv{std::move(key), ValueType::ARRAY, std::move(p)}));
}

void Writer::set_i32_array(std::string key, std::vector<int32_t> v) {
  std::vector<uint8_t> p;
  put<uint32_t>(p, static_cast<uint32_t>(ValueType::I32));
  put<uint64_t>(p, v.size());
  for (int32_t x : v) put<int32_t>(p, x);
  add_kv(std::make_shared<Kv>(Kv{std::move(key), ValueType::ARRAY, std::move(p)}));
}

void Writer::copy_key(const File& from, std::string_view key) {
  ValueType type{};
  const std::string_view raw = from.raw_value(key, &type);  // already validated by the reader
  add_kv(std::make_shared<Kv>(Kv{std::string(key), type, std::vector<uint8_t>(raw.begin(), raw.end())}));
}

size_t Writer::check_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& ne) const {
  TERN_CHECK(!name.empty() && name.size() <= kMaxTensorName, "gguf writer: tensor name '{}' must be 1 to {} bytes",
             name, kMaxTensorName);
  for (const auto& t : tensors_) TERN_CHECK(t->name != name, "gguf writer: duplicate tensor '{}'", name);
  TERN_CHECK(!ne.empty() && ne.size() <= 4, "gguf writer: tensor '{}' has {} dims (must be 1 to 4)", name, ne.size());
  const auto& tr = traits(dtype);
  int64_t rows = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    TERN_CHECK(ne[d] > 0, "gguf writer: tensor '{}' dimension {} is {} (must be positive)", name, d, ne[d]);
    if (d > 0) TERN_CHECK(!__builtin_mul_overflow(rows, ne[d], &rows), "gguf writer: tensor '{}' is too large", name);
  }
  TERN_CHECK(ne[0] % tr.block_elems == 0, "gguf writer: tensor '{}' ne[0]={} is not a multiple of the {} block size {}",
             name, ne[0], tr.name, tr.block_elems);
  size_t expected = 0;
  TERN_CHECK(!__builtin_mul_overflow(row_bytes(dtype, ne[0]), static_cast<size_t>(rows), &expected),
             "gguf writer: tensor '{}' is too large", name);
  return expected;
}

void Writer::add_tensor(std::string name, DType dtype, std::vector<int64_t> ne, const void* data, size_t nbytes) {
  const size_t expected = check_tensor(name, dtype, ne);
  const auto& tr = traits(dtype);
  TERN_CHECK(nbytes == expected, "gguf writer: tensor '{}' ({} {}) needs {} bytes, got {}", name, tr.name,
             fmt::join(ne, "x"), expected, nbytes);
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back(std::make_shared<Tensor>(
      Tensor{std::move(name), dtype, std::move(ne), nbytes, false, std::vector<uint8_t>(p, p + nbytes)}));
}

void Writer::declare_tensor(std::string name, DType dtype, std::vector<int64_t> ne) {
  const size_t nbytes = check_tensor(name, dtype, ne);
  tensors_.push_back(std::make_shared<Tensor>(Tensor{std::move(name), dtype, std::move(ne), nbytes, true, {}}));
}

std::vector<uint8_t> Writer::header_bytes() const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, kMagic);
  put<uint32_t>(out, version_);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kvs_.size());
  for (const auto& kv : kvs_) {
    put_str(out, kv->key);
    put<uint32_t>(out, static_cast<uint32_t>(kv->type));
    out.insert(out.end(), kv->payload.begin(), kv->payload.end());
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_str(out, t->name);
    put<uint32_t>(out, static_cast<uint32_t>(t->ne.size()));
    for (int64_t n : t->ne) put<uint64_t>(out, static_cast<uint64_t>(n));
    put<uint32_t>(out, static_cast<uint32_t>(t->dtype));
    put<uint64_t>(out, offset);
    offset += (t->nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  pad_to(out, alignment_);
  return out;
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> out = header_bytes();
  for (const auto& t : tensors_) {
    TERN_CHECK(!t->declared, "gguf writer: tensor '{}' has no data (declared; write it with a TensorSource)", t->name);
    out.insert(out.end(), t->data.begin(), t->data.end());
    pad_to(out, alignment_);
  }
  return out;
}

void Writer::write(const std::string& path) const { write(path, nullptr); }

void Writer::write(const std::string& path, const TensorSource& source) const {
  for (const auto& t : tensors_)
    TERN_CHECK(!t->declared || source, "{}: tensor '{}' has no data (declared, but no TensorSource given)", path,
               t->name);
  // Write beside the target and rename, so a reader never sees a half-written model.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  TERN_CHECK(f != nullptr, "{}: cannot create: {}", tmp, std::strerror(errno));
  size_t written = 0;
  auto put_bytes = [&](const uint8_t* p, size_t n) {
    if (n != 0 && std::fwrite(p, 1, n, f) != n) fail("{}: cannot write {} bytes: {}", tmp, n, std::strerror(errno));
    written += n;
  };
  try {
    const std::vector<uint8_t> header = header_bytes();
    put_bytes(header.data(), header.size());
    const std::vector<uint8_t> zeros(alignment_, 0);
    std::vector<uint8_t> buf;  // one declared tensor at a time
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = *tensors_[i];
      if (t.declared) {
        buf.assign(t.nbytes, 0);
        source(i, std::span<uint8_t>(buf));
        put_bytes(buf.data(), buf.size());
      } else {
        put_bytes(t.data.data(), t.data.size());
      }
      put_bytes(zeros.data(), (alignment_ - written % alignment_) % alignment_);
    }
    buf = {};
    if (std::fclose(std::exchange(f, nullptr)) != 0) fail("{}: cannot write: {}", tmp, std::strerror(errno));
  } catch (...) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail("{}: cannot rename {} to it: {}", path, tmp, std::strerror(e));
  }
}

}  // namespace tern::gguf
