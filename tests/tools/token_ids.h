// The test tools' token-id argument: "1,50,60" -> {1, 50, 60}.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace tern::test_tools {

inline std::vector<int32_t> parse_ids(const char* s) {
  std::vector<int32_t> ids;
  for (const char* p = s; *p;) {
    char* end;
    ids.push_back(static_cast<int32_t>(std::strtol(p, &end, 10)));
    p = *end ? end + 1 : end;
  }
  return ids;
}

}  // namespace tern::test_tools
