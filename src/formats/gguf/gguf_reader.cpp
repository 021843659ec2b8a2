// GGUF reader: parses and validates the whole header (metadata and tensor infos) before anything is
// handed out, so every later use of a count, length or offset is already known to be in bounds.
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "formats/gguf/byte_cursor.h"
#include "formats/gguf/gguf.h"
#include "formats/gguf/mapped_file.h"

namespace tern::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr size_t kDefaultAlignment = 32;
// ggml only asks for a power of two; anything past 1 MiB would be a waste of file space at best and
// a corrupt field at worst, so we refuse it.
constexpr uint64_t kMaxAlignment = uint64_t{1} << 20;
// ggml's GGML_MAX_NAME is 64 bytes including the terminator; we accept up to 64 bytes of name.
constexpr size_t kMaxTensorName = 64;
// Smallest possible encodings, used to reject impossible counts before reserving anything:
// a kv is at least a key length (8) and a value type (4); a tensor info is a name length (8),
// a 1-byte name, n_dims (4), one dimension (8), a type (4) and an offset (8).
constexpr uint64_t kMinKvBytes = 12;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;
constexpr uint32_t kMaxValueType = static_cast<uint32_t>(ValueType::F64);

// Size of a fixed-size value type; 0 for STRING and ARRAY.
size_t fixed_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    case ValueType::STRING: case ValueType::ARRAY: return 0;
  }
  return 0;
}

bool is_integer(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
    case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64: return true;
    default: return false;
  }
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// An integer of any GGUF integer type, kept without loss so range checks can be exact.
struct IntValue {
  bool is_signed;
  int64_t s;
  uint64_t u;
};

IntValue load_int(ValueType t, const uint8_t* p) {
  switch (t) {
    case ValueType::U8: return {false, 0, load<uint8_t>(p)};
    case ValueType::U16: return {false, 0, load<uint16_t>(p)};
    case ValueType::U32: return {false, 0, load<uint32_t>(p)};
    case ValueType::U64: return {false, 0, load<uint64_t>(p)};
    case ValueType::I8: return {true, load<int8_t>(p), 0};
    case ValueType::I16: return {true, load<int16_t>(p), 0};
    case ValueType::I32: return {true, load<int32_t>(p), 0};
    case ValueType::I64: return {true, load<int64_t>(p), 0};
    default: fail("internal: load_int on a non-integer type");
  }
}

double load_float(ValueType t, const uint8_t* p) {
  return t == ValueType::F32 ? static_cast<double>(load<float>(p)) : load<double>(p);
}

// Names from the file go into error messages; keep those messages printable and short.
std::string printable(std::string_view s, size_t max_len = 96) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') out += static_cast<char>(c);
    else if (c >= 0x80) out += static_cast<char>(c);  // UTF-8 passes through
    else out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max_len) out += "...";
  return out;
}

}  // namespace

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "unknown";
}

namespace {

// One metadata value. Scalars and numeric arrays are read from the image on demand (`raw`);
// strings are views into the image. Nothing here owns file bytes.
struct Value {
  ValueType type = ValueType::U8;
  ValueType elem = ValueType::U8;          // arrays only
  uint64_t count = 0;                      // arrays only
  const uint8_t* raw = nullptr;            // bytes after the type field
  size_t raw_len = 0;
  std::string_view str;                    // STRING
  std::vector<std::string_view> strs;      // array of STRING
};

std::string describe(const Value& v) {
  if (v.type != ValueType::ARRAY) return std::string(value_type_name(v.type));
  return fmt::format("array of {}", value_type_name(v.elem));
}

}  // namespace

struct File::Impl {
  std::string path;
  std::vector<uint8_t> owned;  // from_bytes
  MappedFile mapped;           // open
  const uint8_t* base = nullptr;
  size_t size = 0;

  uint32_t version = 0;
  size_t alignment = kDefaultAlignment;
  size_t data_offset = 0;
  std::vector<std::string> keys;
  std::vector<Value> values;
  std::unordered_map<std::string_view, size_t> key_index;  // views into the image
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string_view, size_t> tensor_index;  // views into the image

  void parse();
  void parse_value(ByteCursor& c, ValueType t, const std::string& what, Value& v);
  void parse_alignment();
  void parse_tensor_info(ByteCursor& c, size_t i);
  void place_tensors();

  const Value& get(std::string_view key) const {
    auto it = key_index.find(key);
    if (it == key_index.end()) fail("{}: missing metadata '{}'", path, printable(key));
    return values[it->second];
  }
  const Value* find(std::string_view key) const {
    auto it = key_index.find(key);
    return it == key_index.end() ? nullptr : &values[it->second];
  }
  [[noreturn]] void mismatch(std::string_view key, const Value& v, std::string_view expected) const {
    fail("{}: metadata '{}' is {}, expected {}", path, printable(key), describe(v), expected);
  }
};

void File::Impl::parse() {
  ByteCursor c(base, size, path);
  TERN_CHECK(size >= 4, "{}: file too short ({} bytes) to be a GGUF file", path, size);
  const uint32_t magic = c.u32("magic");
  TERN_CHECK(magic == kMagic, "{}: bad magic {:#010x} (expected {:#010x}, \"GGUF\"): not a GGUF file", path, magic,
             kMagic);
  version = c.u32("version");
  TERN_CHECK(version != 1, "{}: GGUF version 1 is not supported (tern reads versions 2 and 3); re-convert the model "
             "with a current llama.cpp", path);
  TERN_CHECK(!(version > 3 && (version & 0xffff) == 0),
             "{}: GGUF version field {:#010x} looks byte-swapped: big-endian GGUF files are not supported", path,
             version);
  TERN_CHECK(version == 2 || version == 3, "{}: unsupported GGUF version {} (tern reads versions 2 and 3)", path,
             version);
  const uint64_t tensor_count = c.u64("tensor_count");
  const uint64_t kv_count = c.u64("kv_count");
  // Fail fast on counts the file cannot possibly hold, before reserving anything from them.
  TERN_CHECK(kv_count <= c.remaining() / kMinKvBytes,
             "{}: kv_count {} is impossible: the {} bytes after the header hold at most {} metadata entries", path,
             kv_count, c.remaining(), c.remaining() / kMinKvBytes);
  TERN_CHECK(tensor_count <= c.remaining() / kMinTensorInfoBytes,
             "{}: tensor_count {} is impossible: the {} bytes after the header hold at most {} tensor infos", path,
             tensor_count, c.remaining(), c.remaining() / kMinTensorInfoBytes);

  keys.reserve(kv_count);
  values.reserve(kv_count);
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string key_what = fmt::format("metadata key #{}", i);
    const std::string_view key = c.str(key_what);
    TERN_CHECK(!key.empty(), "{}: {} is empty", path, key_what);
    TERN_CHECK(key_index.emplace(key, values.size()).second, "{}: duplicate metadata key '{}'", path, printable(key));
    const std::string what = fmt::format("metadata '{}'", printable(key));
    const uint32_t type = c.u32(what + " value type");
    TERN_CHECK(type <= kMaxValueType, "{}: {}: unknown value type {}", path, what, type);
    Value v;
    parse_value(c, static_cast<ValueType>(type), what, v);
    keys.emplace_back(key);
    values.push_back(std::move(v));
  }
  parse_alignment();

  TERN_CHECK(tensor_count <= c.remaining() / kMinTensorInfoBytes,
             "{}: tensor_count {} is impossible: the {} bytes after the metadata hold at most {} tensor infos", path,
             tensor_count, c.remaining(), c.remaining() / kMinTensorInfoBytes);
  tensors.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) parse_tensor_info(c, i);

  // The data section starts at the next multiple of the alignment. A file with no tensors may
  // end without that padding; one with tensors must at least reach it.
  data_offset = (c.pos() + alignment - 1) / alignment * alignment;
  TERN_CHECK(tensors.empty() || data_offset <= size,
             "{}: data section would start at offset {} but the file is only {} bytes (truncated?)", path,
             data_offset, size);
  place_tensors();
}

void File::Impl::parse_value(ByteCursor& c, ValueType t, const std::string& what, Value& v) {
  v.type = t;
  v.raw = c.here();
  const size_t start = c.pos();
  switch (t) {
    case ValueType::STRING:
      v.str = c.str(what);
      break;
    case ValueType::ARRAY: {
      const uint32_t et = c.u32(what + " array element type");
      TERN_CHECK(et <= kMaxValueType, "{}: {}: unknown array element type {}", path, what, et);
      v.elem = static_cast<ValueType>(et);
      TERN_CHECK(v.elem != ValueType::ARRAY, "{}: {}: nested arrays are not supported", path, what);
      v.count = c.u64(what + " array count");
      // A string element is at least its 8-byte length, so this bound holds for every element type.
      const size_t min_elem = v.elem == ValueType::STRING ? 8 : fixed_size(v.elem);
      TERN_CHECK(v.count <= c.remaining() / min_elem,
                 "{}: {}: array count {} exceeds the {} bytes left in the file ({} bytes per {} element at least)",
                 path, what, v.count, c.remaining(), min_elem, value_type_name(v.elem));
      if (v.elem == ValueType::STRING) {
        v.strs.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) v.strs.push_back(c.str(what));
      } else {
        const uint8_t* p = c.bytes(v.count * min_elem, what);
        if (v.elem == ValueType::BOOL)
          for (uint64_t i = 0; i < v.count; ++i)
            TERN_CHECK(p[i] <= 1, "{}: {}: element {} is bool {} (must be 0 or 1)", path, what, i, p[i]);
      }
      break;
    }
    case ValueType::BOOL: {
      const uint8_t b = c.u8(what);
      TERN_CHECK(b <= 1, "{}: {}: bool value {} (must be 0 or 1)", path, what, b);
      break;
    }
    default:
      c.bytes(fixed_size(t), what);
      break;
  }
  v.raw_len = c.pos() - start;
}

void File::Impl::parse_alignment() {
  const Value* v = find("general.alignment");
  if (!v) return;
  if (v->type != ValueType::U32) mismatch("general.alignment", *v, "u32");
  const uint32_t a = load<uint32_t>(v->raw);
  TERN_CHECK(a != 0 && (a & (a - 1)) == 0 && a <= kMaxAlignment,
             "{}: metadata 'general.alignment' is {}: must be a power of two from 1 to {}", path, a, kMaxAlignment);
  alignment = a;
}

void File::Impl::parse_tensor_info(ByteCursor& c, size_t i) {
  const std::string_view name = c.str(fmt::format("tensor #{} name", i));
  TERN_CHECK(!name.empty(), "{}: tensor #{} has an empty name", path, i);
  TERN_CHECK(name.size() <= kMaxTensorName, "{}: tensor #{} name '{}' is {} bytes (at most {} allowed)", path, i,
             printable(name), name.size(), kMaxTensorName);
  TERN_CHECK(tensor_index.emplace(name, tensors.size()).second, "{}: duplicate tensor name '{}'", path,
             printable(name));
  const std::string what = fmt::format("tensor '{}'", printable(name));

  TensorInfo t;
  t.name = std::string(name);
  const uint32_t ndim = c.u32(what + " n_dims");
  TERN_CHECK(ndim >= 1 && ndim <= 4, "{}: {}: n_dims {} is out of range (must be 1 to 4)", path, what, ndim);
  t.ndim = static_cast<int>(ndim);
  for (uint32_t d = 0; d < ndim; ++d) {
    const uint64_t ne = c.u64(fmt::format("{} ne[{}]", what, d));
    TERN_CHECK(ne <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               "{}: {}: dimension ne[{}] is negative ({})", path, what, d, static_cast<int64_t>(ne));
    // ggml tolerates empty tensors, but no model uses them and a 0 here is far likelier corruption.
    TERN_CHECK(ne > 0, "{}: {}: dimension ne[{}] is 0 (must be positive)", path, what, d);
    t.ne[d] = static_cast<int64_t>(ne);
  }
  const uint32_t type = c.u32(what + " type");
  const auto tr = dtype_traits(type);
  TERN_CHECK(tr.has_value() && tr->in_files, "{}: unsupported tensor type {} for tensor '{}'", path, type,
             printable(name));
  t.dtype = static_cast<DType>(type);
  t.offset = c.u64(what + " offset");

  int64_t nel = 1;
  for (int d = 0; d < 4; ++d)
    TERN_CHECK(!__builtin_mul_overflow(nel, t.ne[d], &nel), "{}: {}: element count overflows ({} x {} x {} x {})",
               path, what, t.ne[0], t.ne[1], t.ne[2], t.ne[3]);
  TERN_CHECK(t.ne[0] % tr->block_elems == 0,
             "{}: {}: row length ne[0]={} is not a multiple of the {} block size {}", path, what, t.ne[0], tr->name,
             tr->block_elems);
  uint64_t nbytes = 0;
  TERN_CHECK(!__builtin_mul_overflow(static_cast<uint64_t>(nel / tr->block_elems), tr->block_bytes, &nbytes),
             "{}: {}: byte size overflows ({} elements of {})", path, what, nel, tr->name);
  t.nbytes = nbytes;
  TERN_CHECK(t.offset % alignment == 0, "{}: {}: offset {} is not a multiple of the alignment {}", path, what,
             t.offset, alignment);
  tensors.push_back(std::move(t));
}

void File::Impl::place_tensors() {
  const size_t data_size = data_offset <= size ? size - data_offset : 0;
  for (auto& t : tensors) {
    TERN_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset,
               "{}: tensor '{}': offset {} + {} bytes exceeds the data section ({} bytes)", path, printable(t.name),
               t.offset, t.nbytes, data_size);
    t.data = base + data_offset + t.offset;
  }
  // Overlapping tensors would let a write through one corrupt another (and are always a broken file).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& prev = tensors[order[k - 1]];
    const TensorInfo& cur = tensors[order[k]];
    TERN_CHECK(prev.offset + prev.nbytes <= cur.offset,
               "{}: tensor '{}' (data bytes {}..{}) overlaps tensor '{}' (data bytes {}..{})", path,
               printable(cur.name), cur.offset, cur.offset + cur.nbytes, printable(prev.name), prev.offset,
               prev.offset + prev.nbytes);
  }
}

// ---- File ----

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->mapped = MappedFile::open(path);
  impl->base = impl->mapped.data();
  impl->size = impl->mapped.size();
  impl->parse();
  return File(std::move(impl));
}

File File::from_bytes(std::vector<uint8_t> bytes, std::string name) {
  auto impl = std::make_unique<Impl>();
  impl->path = std::move(name);
  impl->owned = std::move(bytes);
  impl->base = impl->owned.data();
  impl->size = impl->owned.size();
  impl->parse();
  return File(std::move(impl));
}

void File::release_pages(const void* p, size_t n) const { impl_->mapped.release(p, n); }
bool File::maps(const void* p) const { return impl_->mapped.contains(p); }

const std::string& File::path() const { return impl_->path; }
uint32_t File::version() const { return impl_->version; }
size_t File::alignment() const { return impl_->alignment; }
size_t File::file_size() const { return impl_->size; }
const std::vector<std::string>& File::keys() const { return impl_->keys; }
bool File::has(std::string_view key) const { return impl_->find(key) != nullptr; }
ValueType File::type_of(std::string_view key) const { return impl_->get(key).type; }

ValueType File::array_type(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::ARRAY) impl_->mismatch(key, v, "array");
  return v.elem;
}

size_t File::array_size(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::ARRAY) impl_->mismatch(key, v, "array");
  return v.count;
}

int64_t File::get_int(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (!is_integer(v.type)) impl_->mismatch(key, v, "integer");
  const IntValue x = load_int(v.type, v.raw);
  if (x.is_signed) return x.s;
  TERN_CHECK(x.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
             "{}: metadata '{}' value {} does not fit in int64", impl_->path, printable(key), x.u);
  return static_cast<int64_t>(x.u);
}

uint64_t File::get_uint(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (!is_integer(v.type)) impl_->mismatch(key, v, "integer");
  const IntValue x = load_int(v.type, v.raw);
  if (!x.is_signed) return x.u;
  TERN_CHECK(x.s >= 0, "{}: metadata '{}' value {} is negative, expected an unsigned integer", impl_->path,
             printable(key), x.s);
  return static_cast<uint64_t>(x.s);
}

double File::get_float(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::F32 && v.type != ValueType::F64) impl_->mismatch(key, v, "float");
  return load_float(v.type, v.raw);
}

bool File::get_bool(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::BOOL) impl_->mismatch(key, v, "bool");
  return v.raw[0] != 0;
}

std::string_view File::get_string(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::STRING) impl_->mismatch(key, v, "string");
  return v.str;
}

std::vector<std::string_view> File::get_string_array(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::ARRAY || v.elem != ValueType::STRING) impl_->mismatch(key, v, "array of string");
  return v.strs;
}

std::vector<double> File::get_float_array(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::ARRAY || (v.elem != ValueType::F32 && v.elem != ValueType::F64))
    impl_->mismatch(key, v, "array of float");
  const uint8_t* p = v.raw + 4 + 8;  // after element type and count
  const size_t es = fixed_size(v.elem);
  std::vector<double> out(v.count);
  for (size_t i = 0; i < out.size(); ++i) out[i] = load_float(v.elem, p + i * es);
  return out;
}

std::vector<int64_t> File::get_int_array(std::string_view key) const {
  const Value& v = impl_->get(key);
  if (v.type != ValueType::ARRAY || !is_integer(v.elem)) impl_->mismatch(key, v, "array of integer");
  const uint8_t* p = v.raw + 4 + 8;
  const size_t es = fixed_size(v.elem);
  std::vector<int64_t> out(v.count);
  for (size_t i = 0; i < out.size(); ++i) {
    const IntValue x = load_int(v.elem, p + i * es);
    TERN_CHECK(x.is_signed || x.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               "{}: metadata '{}' element {} value {} does not fit in int64", impl_->path, printable(key), i, x.u);
    out[i] = x.is_signed ? x.s : static_cast<int64_t>(x.u);
  }
  return out;
}

std::optional<int64_t> File::find_int(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);
}
std::optional<double> File::find_float(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}
std::optional<std::string_view> File::find_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}
std::optional<bool> File::find_bool(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_bool(key);
}

namespace {

std::string scalar_to_string(ValueType t, const uint8_t* p) {
  if (is_integer(t)) {
    const IntValue x = load_int(t, p);
    return x.is_signed ? fmt::format("{}", x.s) : fmt::format("{}", x.u);
  }
  if (t == ValueType::F32) return fmt::format("{}", load<float>(p));
  if (t == ValueType::F64) return fmt::format("{}", load<double>(p));
  if (t == ValueType::BOOL) return p[0] ? "true" : "false";
  return "?";
}

std::string quoted(std::string_view s) {
  std::string out(1, '"');
  out += printable(s, 200);
  out += '"';
  return out;
}

}  // namespace

std::string File::value_to_string(std::string_view key, size_t max_items) const {
  const Value& v = impl_->get(key);
  if (v.type == ValueType::STRING) return quoted(v.str);
  if (v.type != ValueType::ARRAY) return scalar_to_string(v.type, v.raw);
  std::string out = "[";
  const size_t n = std::min<uint64_t>(v.count, max_items);
  const uint8_t* p = v.raw + 4 + 8;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ", ";
    out += v.elem == ValueType::STRING ? quoted(v.strs[i]) : scalar_to_string(v.elem, p + i * fixed_size(v.elem));
  }
  if (v.count > n) out += fmt::format(", ... ({} {} items)", v.count, value_type_name(v.elem));
  return out + "]";
}

const std::vector<TensorInfo>& File::tensors() const { return impl_->tensors; }

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = impl_->tensor_index.find(name);
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

std::string_view File::raw_value(std::string_view key, ValueType* type) const {
  const Value& v = impl_->get(key);
  *type = v.type;
  return {reinterpret_cast<const char*>(v.raw), v.raw_len};
}

}  // namespace tern::gguf
