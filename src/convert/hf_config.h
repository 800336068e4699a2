// Typed, error-reporting access to a Hugging Face config.json (internal to convert/). Every error
// names the file and the field, so a bad checkpoint gives one actionable line.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace dflash::convert {

class HfConfig {
 public:
  // Reads and parses `path`; `path` is used in every message.
  static util::Result<HfConfig> load(const std::string& path);
  HfConfig(nlohmann::json j, std::string file) : j_(std::move(j)), file_(std::move(file)) {}

  const std::string& file() const { return file_; }
  const nlohmann::json& raw() const { return j_; }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  // A sub-object ("text_config", "dflash_config", "rope_parameters"); empty when absent or null.
  util::Result<HfConfig> object(const std::string& key) const;
  // Keys of `other` override ours (how the public converter flattens text_config).
  HfConfig merged_with(const HfConfig& other) const;

  util::Result<int64_t> integer(const std::string& key) const;  // required
  util::Result<std::optional<int64_t>> opt_integer(const std::string& key) const;
  util::Result<double> number(const std::string& key) const;
  util::Result<std::optional<double>> opt_number(const std::string& key) const;
  util::Result<std::optional<bool>> opt_bool(const std::string& key) const;
  util::Result<std::optional<std::string>> opt_string(const std::string& key) const;
  util::Result<std::optional<std::vector<int64_t>>> opt_int_array(const std::string& key) const;
  util::Result<std::optional<std::vector<std::string>>> opt_string_array(const std::string& key) const;

  // A size (1 .. 2^31): required, or `dflt` when absent.
  util::Result<int64_t> positive_size(const std::string& key) const;
  util::Result<int64_t> positive_size_or(const std::string& key, int64_t dflt) const;
  // A per-layer list of names: exactly `n_layers` entries (`n_layers_key` names where that count came
  // from), each one of `choices`; nullopt when absent.
  util::Result<std::optional<std::vector<std::string>>> opt_choice_list(const std::string& key, int64_t n_layers,
                                                                       const std::string& n_layers_key,
                                                                       const std::vector<std::string>& choices) const;
  // Multimodal checkpoints nest the text model's fields in text_config; this is them merged over the
  // top level (as the public converter flattens it).
  util::Result<HfConfig> text_fields() const;

  // "<file>: field 'key' <what>"
  util::Status error(const std::string& key, const std::string& what) const;

 private:
  nlohmann::json j_;
  std::string file_;
};

}  // namespace dflash::convert
