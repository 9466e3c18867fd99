#include "probe/head_spec.h"

#include <map>
#include <set>
#include <sstream>

#include "common/errors.h"

namespace vitprobe {
namespace {

const std::map<std::string, HeadKind>& kinds_by_name() {
  static const std::map<std::string, HeadKind> kinds = {
      {"cls", HeadKind::Cls},
      {"mean", HeadKind::Mean},
      {"cls+mean", HeadKind::ClsMean},
      {"center", HeadKind::Center},
      {"cattn", HeadKind::CenterAttention},
      {"attn-mean", HeadKind::AttentionMean},
      {"attn-minent", HeadKind::AttentionMinEntropy},
      {"abmilp", HeadKind::Abmilp},
      {"ep", HeadKind::EfficientProbing},
      {"ep_all", HeadKind::EfficientProbing},
      {"simpool", HeadKind::SimPool},
      {"aim", HeadKind::Aim},
      {"vjepa", HeadKind::VJepa},
      {"knn", HeadKind::Knn},
      {"dino", HeadKind::Dino},
  };
  return kinds;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

// AbMILP's scorer depth (beyond_cls --abmilp_depth): any, within reason.
constexpr int kMaxAbmilpDepth = 16;

int parse_positive(const std::string& value, const std::string& head) {
  try {
    size_t used = 0;
    const int number = std::stoi(value, &used);
    if (used == value.size() && number > 0) return number;
  } catch (const std::exception&) {
  }
  throw BadInput("head '" + head + "': expected a positive integer, got '" + value + "'");
}

void check_choice(const std::string& head, const std::string& key, const std::string& value,
                  const std::set<std::string>& allowed) {
  if (allowed.count(value)) return;
  std::string list;
  for (const auto& item : allowed) list += (list.empty() ? "" : ", ") + item;
  throw BadInput("head '" + head + "': " + key + "=" + value + " is not one of " + list);
}

// key=value pairs of "k=v,k=v"; every key at most once.
std::map<std::string, std::string> parse_options(const std::string& head, const std::string& text) {
  std::map<std::string, std::string> options;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    item = trim(item);
    const auto equals = item.find('=');
    if (equals == std::string::npos || equals == 0) {
      throw BadInput("head '" + head + "': expected key=value options, got '" + item + "'");
    }
    const auto key = item.substr(0, equals);
    if (!options.emplace(key, item.substr(equals + 1)).second) {
      throw BadInput("head '" + head + "': option '" + key + "' given twice");
    }
  }
  return options;
}

// The canonical option text: only what differs from the defaults, in the order given.
class CanonicalOptions {
 public:
  void add(const std::string& key, const std::string& value, const std::string& fallback) {
    if (value != fallback) text_ += (text_.empty() ? "" : ",") + key + "=" + value;
  }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// ep:M[,d_out=K] and ep_all:M[,d_out=K] (EP repository: --cls_features ep / ep_all, --ep_queries, --d_out).
HeadSpec parse_efficient_probing(const std::string& text, const std::string& word, const std::string& argument) {
  const auto comma = argument.find(',');
  const std::string size = trim(argument.substr(0, comma));
  if (size.empty() || size.find('=') != std::string::npos) {
    throw BadInput("head '" + text + "': needs a size, the number of queries, first, e.g. " + word + ":32");
  }
  HeadSpec spec;
  spec.kind = HeadKind::EfficientProbing;
  spec.size = parse_positive(size, text);
  spec.content = word == "ep_all" ? "all" : "patch";
  const std::string rest = comma == std::string::npos ? "" : argument.substr(comma + 1);
  for (const auto& [key, value] : parse_options(text, rest)) {
    if (key != "d_out") throw BadInput("head '" + text + "': unknown " + word + " option '" + key + "' (d_out)");
    spec.d_out = parse_positive(value, text);
  }
  spec.name = word + ":" + std::to_string(spec.size) + (spec.d_out == 1 ? "" : ",d_out=" + std::to_string(spec.d_out));
  return spec;
}

// The canonical name lists only what differs from the defaults, in a fixed order.
std::string abmilp_name(const HeadSpec& spec) {
  CanonicalOptions options;
  options.add("depth", std::to_string(spec.depth), "1");
  options.add("act", spec.act, "relu");
  options.add("sa", spec.sa, "none");
  options.add("cond", spec.cond, "none");
  options.add("content", spec.content, "patch");
  return options.text().empty() ? "abmilp" : "abmilp:" + options.text();
}

HeadSpec parse_abmilp(const std::string& text, const std::string& option_text) {
  HeadSpec spec;
  spec.kind = HeadKind::Abmilp;
  for (const auto& [key, value] : parse_options(text, option_text)) {
    if (key == "depth") {
      spec.depth = parse_positive(value, text);
      if (spec.depth > kMaxAbmilpDepth) {
        throw BadInput("head '" + text + "': depth=" + value + " is more than " + std::to_string(kMaxAbmilpDepth));
      }
    } else if (key == "act") {
      check_choice(text, key, value, {"tanh", "relu"});
      spec.act = value;
    } else if (key == "sa") {
      check_choice(text, key, value, {"none", "map", "both"});
      spec.sa = value;
    } else if (key == "cond") {
      check_choice(text, key, value, {"none", "pe"});
      spec.cond = value;
    } else if (key == "content") {
      check_choice(text, key, value, {"patch", "all"});
      spec.content = value;
    } else {
      throw BadInput("head '" + text + "': unknown abmilp option '" + key + "' (depth, act, sa, cond, content)");
    }
  }
  spec.name = abmilp_name(spec);
  return spec;
}

// aim[:heads=H] and vjepa[:heads=H,depth=L,proj=on|off].
HeadSpec parse_attentive(const std::string& text, const std::string& word, const std::string& argument) {
  HeadSpec spec;
  spec.kind = word == "aim" ? HeadKind::Aim : HeadKind::VJepa;
  const bool vjepa = spec.kind == HeadKind::VJepa;
  for (const auto& [key, value] : parse_options(text, argument)) {
    if (key == "heads") {
      spec.heads = parse_positive(value, text);
    } else if (vjepa && key == "depth") {
      spec.depth = parse_positive(value, text);
    } else if (vjepa && key == "proj") {
      check_choice(text, key, value, {"on", "off"});
      spec.proj = value == "on";
    } else {
      throw BadInput("head '" + text + "': unknown " + word + " option '" + key + "' (" +
                     (vjepa ? "heads, depth, proj" : "heads") + ")");
    }
  }
  CanonicalOptions options;
  options.add("heads", std::to_string(spec.heads), "16");
  if (vjepa) {
    options.add("depth", std::to_string(spec.depth), "1");
    options.add("proj", spec.proj ? "on" : "off", "on");
  }
  spec.name = options.text().empty() ? word : word + ":" + options.text();
  return spec;
}

}  // namespace

bool HeadSpec::learned_pooling() const {
  return kind == HeadKind::Abmilp || kind == HeadKind::EfficientProbing || kind == HeadKind::SimPool ||
         kind == HeadKind::Aim || kind == HeadKind::VJepa;
}

bool HeadSpec::reads_prefix_tokens() const {
  return (kind == HeadKind::Abmilp || kind == HeadKind::EfficientProbing) && content == "all";
}

bool HeadSpec::weights_patches() const {
  return learned_pooling() || kind == HeadKind::CenterAttention || kind == HeadKind::AttentionMean ||
         kind == HeadKind::AttentionMinEntropy;
}

int HeadSpec::num_pooling_maps() const {
  if (kind == HeadKind::EfficientProbing) return size;
  if (kind == HeadKind::Aim || kind == HeadKind::VJepa) return heads;
  return 1;
}

bool HeadSpec::needs_attention() const {
  return kind == HeadKind::CenterAttention || kind == HeadKind::AttentionMean ||
         kind == HeadKind::AttentionMinEntropy;
}

std::string head_kind_name(HeadKind kind) {
  for (const auto& [name, value] : kinds_by_name()) {
    if (value == kind && name != "ep_all") return name;
  }
  return "?";
}

HeadSpec parse_head_spec(const std::string& raw) {
  const std::string text = trim(raw);
  const auto colon = text.find(':');
  const std::string word = text.substr(0, colon);
  const std::string argument = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (word == "mhca") {
    throw BadInput("head 'mhca' was replaced by the two official poolers it mixed: 'aim' (the EP repository's AIM "
                   "pooler) and 'vjepa' (V-JEPA's AttentivePooler); heads saved as mhca cannot be loaded");
  }
  const auto found = kinds_by_name().find(word);
  if (found == kinds_by_name().end()) {
    throw BadInput("unknown head '" + text + "' (known: " + head_syntax_help() + ")");
  }
  HeadSpec spec;
  spec.kind = found->second;
  switch (spec.kind) {
    case HeadKind::EfficientProbing:
      return parse_efficient_probing(text, word, argument);
    case HeadKind::Aim:
    case HeadKind::VJepa:
      return parse_attentive(text, word, argument);
    case HeadKind::Center:
    case HeadKind::CenterAttention:
      if (argument.empty()) throw BadInput("head '" + text + "': needs a size, e.g. " + word + ":4");
      spec.size = parse_positive(argument, text);
      spec.name = word + ":" + std::to_string(spec.size);
      return spec;
    case HeadKind::Abmilp:
      return parse_abmilp(text, argument);
    case HeadKind::Knn:
      for (const auto& [key, value] : parse_options(text, argument)) {
        if (key != "feature") throw BadInput("head '" + text + "': unknown knn option '" + key + "' (feature)");
        check_choice(text, key, value, {"cls", "mean", "cls+mean"});
        spec.knn_feature = value;
      }
      spec.name = spec.knn_feature == "cls" ? "knn" : "knn:feature=" + spec.knn_feature;
      return spec;
    default:
      if (!argument.empty()) throw BadInput("head '" + text + "': '" + word + "' takes no options");
      spec.name = word;
      return spec;
  }
}

std::vector<HeadSpec> parse_head_list(const std::string& text) {
  // Split on ',' and ';'; a comma-separated key=value item belongs to the head before it.
  std::vector<std::string> items;
  std::stringstream groups(text);
  for (std::string group; std::getline(groups, group, ';');) {
    bool group_start = true;
    std::stringstream stream(group);
    for (std::string item; std::getline(stream, item, ',');) {
      item = trim(item);
      if (item.empty()) continue;
      const bool continues = item.find('=') != std::string::npos && item.find(':') == std::string::npos;
      if (continues) {
        if (group_start || items.empty()) throw BadInput("--heads '" + text + "': option '" + item + "' has no head");
        items.back() += "," + item;
      } else {
        items.push_back(item);
      }
      group_start = false;
    }
  }
  if (items.empty()) throw BadInput("--heads '" + text + "': no head given (known: " + head_syntax_help() + ")");
  std::vector<HeadSpec> specs;
  std::set<std::string> seen;
  for (const auto& item : items) {
    auto spec = parse_head_spec(item);
    if (!seen.insert(spec.name).second) throw BadInput("--heads '" + text + "': head '" + spec.name + "' given twice");
    specs.push_back(std::move(spec));
  }
  return specs;
}

std::string head_syntax_help() {
  return "cls, mean, cls+mean, center:N, cattn:N, attn-mean, attn-minent, "
         "abmilp[:depth=N,act=relu|tanh,sa=none|map|both,cond=none|pe,content=patch|all], ep:M[,d_out=K], "
         "ep_all:M[,d_out=K], simpool, aim[:heads=16], vjepa[:heads=16,depth=1,proj=on|off], "
         "knn[:feature=cls|mean|cls+mean], dino (needs --oracle-model)";
}

}  // namespace vitprobe
