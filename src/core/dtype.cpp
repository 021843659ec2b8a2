#include "core/dtype.h"

#include <array>

#include "core/error.h"

namespace tern {
namespace {

struct Entry {
  uint32_t id;
  DTypeTraits t;
};

// Block layouts follow ggml: a QK-element block stores scales then packed quants.
constexpr std::array kTypes = {
    Entry{0, {"f32", 1, 4, false}},      Entry{1, {"f16", 1, 2, false}},
    Entry{2, {"q4_0", 32, 18, true}},    Entry{3, {"q4_1", 32, 20, true}},
    Entry{6, {"q5_0", 32, 22, true}},    Entry{7, {"q5_1", 32, 24, true}},
    Entry{8, {"q8_0", 32, 34, true}},    Entry{9, {"q8_1", 32, 36, true}},
    Entry{10, {"q2_k", 256, 84, true}},  Entry{11, {"q3_k", 256, 110, true}},
    Entry{12, {"q4_k", 256, 144, true}}, Entry{13, {"q5_k", 256, 176, true}},
    Entry{14, {"q6_k", 256, 210, true}}, Entry{15, {"q8_k", 256, 292, true}},
    Entry{24, {"i8", 1, 1, false}},      Entry{25, {"i16", 1, 2, false}},
    Entry{26, {"i32", 1, 4, false}},     Entry{27, {"i64", 1, 8, false}},
    Entry{28, {"f64", 1, 8, false}},     Entry{30, {"bf16", 1, 2, false}},
    Entry{0x10000, {"fp8_e4m3", 1, 1, false, false}},
};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t id) {
  for (const auto& e : kTypes)
    if (e.id == id) return e.t;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const auto& e : kTypes)
    if (e.id == static_cast<uint32_t>(t)) return e.t;
  fail("internal: unknown dtype id {}", static_cast<uint32_t>(t));
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : kTypes)
    if (e.t.name == name) return static_cast<DType>(e.id);
  return std::nullopt;
}

}  // namespace tern
