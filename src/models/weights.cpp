#include "models/weights.h"

#include "core/error.h"

namespace tern {

TensorView WeightLoader::find(const std::string& name, std::initializer_list<int64_t> ne, bool required) {
  const gguf::TensorInfo* t = file_.find_tensor(name);
  if (!t) {
    TERN_CHECK(!required, "{}: missing tensor '{}'", file_.path(), name);
    return {};
  }
  int d = 0;
  bool ok = static_cast<size_t>(t->ndim) <= ne.size();
  for (int64_t n : ne) ok = ok && t->ne[d++] == n;
  TERN_CHECK(ok, "{}: tensor '{}' has shape [{}, {}, {}, {}], expected {}", file_.path(), name, t->ne[0], t->ne[1],
             t->ne[2], t->ne[3], fmt::join(ne, ", "));
  TERN_CHECK(backend_.supports_weight(t->dtype), "{}: tensor '{}' has type {}, which the {} backend does not support",
             file_.path(), name, dtype_name(t->dtype), backend_.name());
  TensorView v;
  v.data = const_cast<void*>(t->data);
  v.dtype = t->dtype;
  v.ndim = t->ndim;
  v.ne = t->ne;
  const auto& tr = traits(t->dtype);
  v.nb[0] = tr.block_elems == 1 ? tr.block_bytes : 0;
  v.nb[1] = row_bytes(t->dtype, t->ne[0]);
  v.nb[2] = v.nb[1] * t->ne[1];
  v.nb[3] = v.nb[2] * t->ne[2];
  bytes_ += t->nbytes;
  return v;
}

TensorView WeightLoader::adopt(const TensorView& file_view, const TensorView& backend_view) {
  if (backend_view.data != file_view.data)
    file_.release_pages(file_view.data, file_view.row_size() * static_cast<size_t>(file_view.nrows()));
  return backend_view;
}

bool WeightLoader::in_file(const TensorView& v) const {
  return file_.maps(v.data);
}

TensorView WeightLoader::get(const std::string& name, std::initializer_list<int64_t> ne, bool required) {
  const TensorView v = find(name, ne, required);
  return v.data ? adopt(v, backend_.place_weight(v)) : v;
}

TensorView WeightLoader::get_matmul(const std::string& name, std::initializer_list<int64_t> ne, bool required) {
  const TensorView v = find(name, ne, required);
  return v.data ? prepare(v) : v;
}

TensorView WeightLoader::get_f32(const std::string& name, int64_t n) {
  const TensorView v = find(name, {n}, true);
  TERN_CHECK(v.dtype == DType::F32, "{}: tensor '{}' has type {}, expected f32", file_.path(), name,
             dtype_name(v.dtype));
  return adopt(v, backend_.place_weight(v));
}

int64_t arch_int(const gguf::File& f, const std::string& arch, const std::string& key) {
  return f.get_int(arch + "." + key);
}

int64_t arch_int_or(const gguf::File& f, const std::string& arch, const std::string& key, int64_t fallback) {
  return f.find_int(arch + "." + key).value_or(fallback);
}

double arch_float_or(const gguf::File& f, const std::string& arch, const std::string& key, double fallback) {
  return f.find_float(arch + "." + key).value_or(fallback);
}

}  // namespace tern
