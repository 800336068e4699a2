#include "convert/hf_config.h"

#include <algorithm>
#include <cmath>

#include "util/mmap_file.h"

namespace dflash::convert {

using nlohmann::json;
using util::Result;
using util::Status;

Result<HfConfig> HfConfig::load(const std::string& path) {
  if (!util::file_exists(path)) return util::not_found(path + ": not found");
  DFLASH_ASSIGN_OR_RETURN(std::string text, util::read_text_file(path));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // nlohmann's message names the byte offset; keep it on one line.
    std::string what = e.what();
    for (char& c : what)
      if (c == '\n' || c == '\r') c = ' ';
    return util::corrupt(path + ": not valid JSON (" + what + ")");
  }
  if (!j.is_object()) return util::corrupt(path + ": not a JSON object");
  return HfConfig(std::move(j), path);
}

Status HfConfig::error(const std::string& key, const std::string& what) const {
  return util::invalid_argument(file_ + ": field '" + key + "' " + what);
}

Result<HfConfig> HfConfig::object(const std::string& key) const {
  if (!has(key)) return HfConfig(json::object(), file_);
  if (!j_[key].is_object()) return error(key, "must be an object");
  return HfConfig(j_[key], file_);
}

HfConfig HfConfig::merged_with(const HfConfig& other) const {
  json m = j_;
  for (auto it = other.j_.begin(); it != other.j_.end(); ++it) m[it.key()] = it.value();
  return HfConfig(std::move(m), file_);
}

Result<std::optional<int64_t>> HfConfig::opt_integer(const std::string& key) const {
  if (!has(key)) return std::optional<int64_t>();
  const json& v = j_[key];
  if (v.is_number_integer()) return std::optional<int64_t>(v.get<int64_t>());
  // Some configs write integral values as floats ("num_experts": 4.0).
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return std::optional<int64_t>(static_cast<int64_t>(d));
  }
  return error(key, "must be an integer (is " + v.dump().substr(0, 40) + ")");
}

Result<int64_t> HfConfig::integer(const std::string& key) const {
  DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> v, opt_integer(key));
  if (!v) return error(key, "is missing");
  return *v;
}

Result<std::optional<double>> HfConfig::opt_number(const std::string& key) const {
  if (!has(key)) return std::optional<double>();
  const json& v = j_[key];
  if (!v.is_number()) return error(key, "must be a number (is " + v.dump().substr(0, 40) + ")");
  return std::optional<double>(v.get<double>());
}

Result<double> HfConfig::number(const std::string& key) const {
  DFLASH_ASSIGN_OR_RETURN(std::optional<double> v, opt_number(key));
  if (!v) return error(key, "is missing");
  return *v;
}

Result<std::optional<bool>> HfConfig::opt_bool(const std::string& key) const {
  if (!has(key)) return std::optional<bool>();
  if (!j_[key].is_boolean()) return error(key, "must be true or false");
  return std::optional<bool>(j_[key].get<bool>());
}

Result<std::optional<std::string>> HfConfig::opt_string(const std::string& key) const {
  if (!has(key)) return std::optional<std::string>();
  if (!j_[key].is_string()) return error(key, "must be a string");
  return std::optional<std::string>(j_[key].get<std::string>());
}

Result<std::optional<std::vector<int64_t>>> HfConfig::opt_int_array(const std::string& key) const {
  if (!has(key)) return std::optional<std::vector<int64_t>>();
  const json& v = j_[key];
  if (!v.is_array()) return error(key, "must be a list of integers");
  std::vector<int64_t> out;
  for (const json& e : v) {
    if (!e.is_number_integer()) return error(key, "must be a list of integers (has " + e.dump().substr(0, 40) + ")");
    out.push_back(e.get<int64_t>());
  }
  return std::optional<std::vector<int64_t>>(std::move(out));
}

Result<std::optional<std::vector<std::string>>> HfConfig::opt_string_array(const std::string& key) const {
  if (!has(key)) return std::optional<std::vector<std::string>>();
  const json& v = j_[key];
  if (!v.is_array()) return error(key, "must be a list of strings");
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string()) return error(key, "must be a list of strings (has " + e.dump().substr(0, 40) + ")");
    out.push_back(e.get<std::string>());
  }
  return std::optional<std::vector<std::string>>(std::move(out));
}

Result<int64_t> HfConfig::positive_size(const std::string& key) const {
  DFLASH_ASSIGN_OR_RETURN(int64_t v, integer(key));
  if (v <= 0 || v > (int64_t(1) << 31)) return error(key, util::strfmt("must be a positive size (is %lld)", (long long)v));
  return v;
}

Result<int64_t> HfConfig::positive_size_or(const std::string& key, int64_t dflt) const {
  if (!has(key)) return dflt;
  return positive_size(key);
}

Result<std::optional<std::vector<std::string>>> HfConfig::opt_choice_list(const std::string& key, int64_t n_layers,
                                                                         const std::string& n_layers_key,
                                                                         const std::vector<std::string>& choices) const {
  // Checked in place in the Result: moving the optional<vector> out first trips GCC 12's
  // -Wmaybe-uninitialized false positive in the sanitizer build.
  Result<std::optional<std::vector<std::string>>> r = opt_string_array(key);
  if (!r.is_ok() || !r->has_value()) return r;
  const std::vector<std::string>& v = **r;
  if (static_cast<int64_t>(v.size()) != n_layers)
    return error(key, util::strfmt("has %zu entries but %s is %lld", v.size(), n_layers_key.c_str(), (long long)n_layers));
  std::string allowed;
  for (const std::string& c : choices) allowed += (allowed.empty() ? "" : " or ") + c;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string& s = v[i];
    if (std::find(choices.begin(), choices.end(), s) == choices.end())
      return error(key, "entry " + std::to_string(i) + " is '" + s + "' (" + allowed + ")");
  }
  return r;
}

Result<HfConfig> HfConfig::text_fields() const {
  DFLASH_ASSIGN_OR_RETURN(HfConfig tc, object("text_config"));
  return merged_with(tc);
}

}  // namespace dflash::convert
