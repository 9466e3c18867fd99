#pragma once
// A restricted unpickler for the pickles that torch.save writes. It only builds a tree of plain values:
// globals are looked up in a fixed allow-list, known harmless classes become opaque named objects, and
// nothing from the file is ever imported, called or executed.
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vitprobe {

/// One value of an unpickled tree; which fields are meaningful depends on `kind`.
struct PickleValue {
  /// The kinds of value the unpickler can produce.
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Set, Dict, Object, Global, Storage, Tensor };

  /// Which kind of value this is.
  Kind kind = Kind::None;
  /// A Bool's value.
  bool boolean = false;
  /// An Int's value (integers wider than 64 bits become an Object named "int").
  int64_t integer = 0;
  /// A Float's value.
  double number = 0.0;
  /// String and Bytes contents, an Object's class name, or a Global's "module.name".
  std::string text;
  /// Items of a List, Tuple or Set, in order.
  std::vector<PickleValue*> items;
  /// Key/value pairs of a Dict, in insertion order.
  std::vector<std::pair<PickleValue*, PickleValue*>> entries;
  /// A Tensor's data (CPU, contiguous) or a Storage's flat 1-D data.
  at::Tensor tensor;
};

/// An unpickled tree; it owns every value, so values may be shared and references never dangle.
struct PickleTree {
  /// All values of the tree; a deque keeps their addresses stable while it grows.
  std::unique_ptr<std::deque<PickleValue>> values;
  /// The value that STOP returned.
  const PickleValue* root = nullptr;
};

/// Loads the storage named by a persistent id as a flat 1-D CPU tensor of `numel` elements of `dtype`.
using StorageLoader = std::function<at::Tensor(const std::string& key, at::ScalarType dtype, int64_t numel)>;

/// Unpickles `size` bytes at `data` without executing anything; `source` prefixes every error message,
/// and every malformed or refused input throws BadInput whose message contains "pickle".
PickleTree unpickle(const char* data, size_t size, const std::string& source, const StorageLoader& load_storage);

/// Short type name of a value for reports: "int", "str", "dict", a class name such as "argparse.Namespace".
std::string pickle_kind_name(const PickleValue& value);

}  // namespace vitprobe
