#include "checkpoint/pickle.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_map>

#include "common/errors.h"
#include "common/limits.h"

namespace vitprobe {
namespace {

using Kind = PickleValue::Kind;

// What an allowed global may do. Only the rebuild functions and a few containers are "called", and
// only by building a value here; opaque classes are merely named.
enum class Role {
  OrderedDict, DefaultDict, Set, FrozenSet, ByteArray, CodecsEncode,  // containers and byte strings
  RebuildTensor, RebuildParameter, RebuildFromType,                    // torch's tensor rebuild functions
  StorageType, Dtype, TypeReference,                                   // named, never called
  Opaque,                                                              // recorded by class name only
};

const std::map<std::string, Role>& global_roles() {
  static const std::map<std::string, Role> roles = [] {
    std::map<std::string, Role> table = {
        {"collections.OrderedDict", Role::OrderedDict},
        {"collections.defaultdict", Role::DefaultDict},
        {"builtins.set", Role::Set},
        {"builtins.frozenset", Role::FrozenSet},
        {"builtins.bytearray", Role::ByteArray},
        {"_codecs.encode", Role::CodecsEncode},
        {"torch._utils._rebuild_tensor_v2", Role::RebuildTensor},
        {"torch._utils._rebuild_parameter", Role::RebuildParameter},
        {"torch._utils._rebuild_parameter_with_state", Role::RebuildParameter},
        {"torch._tensor._rebuild_from_type_v2", Role::RebuildFromType},
    };
    // Types that only appear as arguments (a defaultdict factory, the class in _rebuild_from_type_v2);
    // they are never called.
    for (const char* name : {"builtins.list", "builtins.dict", "builtins.tuple", "builtins.int", "builtins.float",
                             "builtins.str", "builtins.bytes", "builtins.bool", "builtins.object", "torch.Tensor",
                             "torch.nn.parameter.Parameter"}) {
      table[name] = Role::TypeReference;
    }
    for (const char* name : {"builtins.slice", "builtins.complex", "argparse.Namespace", "numpy.core.multiarray.scalar",
                             "numpy.dtype", "numpy.core.multiarray._reconstruct", "numpy.ndarray",
                             "numpy._core.multiarray.scalar", "numpy._core.multiarray._reconstruct", "pathlib.PosixPath",
                             "pathlib.WindowsPath", "torch.torch_version.TorchVersion", "torch.device", "torch.Size",
                             "yacs.config.CfgNode"}) {
      table[name] = Role::Opaque;
    }
    for (const char* name : {"float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long",
                             "int32", "int", "int16", "short", "int8", "uint8", "bool", "complex64", "complex128"}) {
      table[std::string("torch.") + name] = Role::Dtype;
    }
    for (const char* name : {"FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage",
                             "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
                             "UntypedStorage"}) {
      table[std::string("torch.") + name] = Role::StorageType;
    }
    return table;
  }();
  return roles;
}

at::ScalarType storage_dtype(const std::string& name) {
  static const std::map<std::string, at::ScalarType> dtypes = {
      {"torch.FloatStorage", at::kFloat},   {"torch.HalfStorage", at::kHalf},  {"torch.BFloat16Storage", at::kBFloat16},
      {"torch.DoubleStorage", at::kDouble}, {"torch.LongStorage", at::kLong},  {"torch.IntStorage", at::kInt},
      {"torch.ShortStorage", at::kShort},   {"torch.CharStorage", at::kChar},  {"torch.ByteStorage", at::kByte},
      {"torch.BoolStorage", at::kBool},     {"torch.UntypedStorage", at::kByte}};
  return dtypes.at(name);
}

// Names from the file end up in one-line error messages, so control bytes are masked and length capped.
std::string printable(const std::string& text) {
  std::string shown;
  for (char c : text.substr(0, 120)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  return text.size() > 120 ? shown + "..." : shown;
}

// Python 3 writes bytes as _codecs.encode(text, 'latin1') under protocol 2; decoding that UTF-8 text
// back to Latin-1 recovers the bytes. Returns false when a code point does not fit one byte.
bool latin1_from_utf8(const std::string& text, std::string& bytes) {
  bytes.clear();
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      bytes += static_cast<char>(c);
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < text.size()) {
      const auto next = static_cast<unsigned char>(text[++i]);
      if ((next & 0xc0) != 0x80) return false;
      bytes += static_cast<char>(((c & 0x03) << 6) | (next & 0x3f));
    } else {
      return false;
    }
  }
  return true;
}

class Unpickler {
 public:
  Unpickler(const char* data, size_t size, const std::string& source, const StorageLoader& load_storage)
      : data_(data), size_(size), source_(source), load_storage_(load_storage),
        values_(std::make_unique<std::deque<PickleValue>>()) {}

  PickleTree run() {
    while (true) {
      op_pos_ = pos_;
      if (pos_ >= size_) malformed("data ends without a STOP opcode");
      const uint8_t op = read_uint(1);
      if (op == '.') {
        PickleTree tree;
        tree.root = pop();
        check_expansion(tree.root);
        tree.values = std::move(values_);
        return tree;
      }
      step(op);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw BadInput(source_ + ": pickle " + what); }
  [[noreturn]] void malformed(const std::string& what) const {
    fail(what + " at byte " + std::to_string(op_pos_) + " (malformed or truncated)");
  }

  // --- reading; every length is checked against the bytes that remain ---
  std::string read_bytes(uint64_t n) {
    if (n > size_ - pos_) {
      malformed("length " + std::to_string(n) + " exceeds the " + std::to_string(size_ - pos_) + " bytes left");
    }
    std::string bytes(data_ + pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return bytes;
  }
  uint64_t read_uint(size_t n) {
    const std::string bytes = read_bytes(n);
    uint64_t value = 0;
    for (size_t i = n; i-- > 0;) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
    return value;
  }
  // LONG4 and BINSTRING lengths are signed 32-bit; a negative one is corrupt.
  uint64_t read_signed_length() {
    const auto length = static_cast<int32_t>(read_uint(4));
    if (length < 0) malformed("negative length");
    return static_cast<uint64_t>(length);
  }
  std::string read_line() {
    const void* end = std::memchr(data_ + pos_, '\n', size_ - pos_);
    if (end == nullptr) malformed("text argument has no end of line");
    const size_t length = static_cast<const char*>(end) - (data_ + pos_);
    std::string line = read_bytes(length);
    ++pos_;
    return line;
  }

  // --- limits ---
  // Real checkpoints need tens of thousands of values; the budget keeps a hostile file from turning a
  // few bytes per value into unbounded memory. Every value built counts, and so does every use of a
  // shared one (memo get, DUP) and every item copied into a container built from another.
  void charge(uint64_t n_values) {
    charged_ += n_values;
    if (charged_ > kMaxPickleValues) {
      fail("builds more than " + std::to_string(kMaxPickleValues) + " values at byte " + std::to_string(op_pos_) +
           " (limit; shared references count once per use)");
    }
  }

  // What the checkpoint walk will make of a value: its leaves and the key-path elements leading to them,
  // with a shared value counted once per use. Computed once per value, so a reference bomb (lists that
  // hold the previous list twice, 40 levels deep) is refused in microseconds instead of being expanded.
  struct Expansion {
    uint64_t leaves = 1;
    uint64_t path_elements = 0;
  };
  static bool is_container(const PickleValue* value) {
    return (value->kind == Kind::Dict && !value->entries.empty()) ||
           ((value->kind == Kind::List || value->kind == Kind::Tuple) && !value->items.empty());
  }
  Expansion expansion_of(const PickleValue* value, int depth) {
    if (!is_container(value)) return {};
    if (depth >= kMaxPickleDepth) {
      fail("nests containers deeper than " + std::to_string(kMaxPickleDepth) + " levels (limit; cyclic?)");
    }
    const auto known = expansions_.find(value);
    if (known != expansions_.end()) return known->second;
    constexpr uint64_t kSaturated = uint64_t{1} << 62;
    Expansion total{0, 0};
    auto add = [&](const PickleValue* child) {
      const Expansion part = expansion_of(child, depth + 1);
      total.leaves = std::min(kSaturated, total.leaves + part.leaves);
      total.path_elements = std::min(kSaturated, total.path_elements + part.path_elements + part.leaves);
    };
    for (const auto& entry : value->entries) add(entry.second);
    for (const PickleValue* item : value->items) add(item);
    expansions_[value] = total;
    return total;
  }
  void check_expansion(const PickleValue* root) {
    const Expansion whole = expansion_of(root, 0);
    const uint64_t size = whole.leaves + whole.path_elements;
    if (size > kMaxPickleExpandedValues) {
      fail("expands to " + (size >= (uint64_t{1} << 62) ? std::string("over 2^62") : std::to_string(size)) +
           " values once shared references are counted per use, over the limit of " +
           std::to_string(kMaxPickleExpandedValues) + " (a reference bomb?)");
    }
  }

  // --- values ---
  PickleValue* make(Kind kind) {
    charge(1);
    values_->emplace_back();
    values_->back().kind = kind;
    return &values_->back();
  }
  PickleValue* make_int(int64_t value) {
    PickleValue* v = make(Kind::Int);
    v->integer = value;
    return v;
  }
  PickleValue* make_text(Kind kind, std::string text) {
    PickleValue* v = make(kind);
    v->text = std::move(text);
    return v;
  }
  // Opaque objects are named like Python's type(x).__name__ for builtins and by full path otherwise.
  PickleValue* make_object(const std::string& class_name) {
    const std::string builtins = "builtins.";
    const bool builtin = class_name.compare(0, builtins.size(), builtins) == 0;
    return make_text(Kind::Object, builtin ? class_name.substr(builtins.size()) : class_name);
  }
  PickleValue* make_sequence(Kind kind, std::vector<PickleValue*> items) {
    charge(items.size());
    PickleValue* v = make(kind);
    v->items = std::move(items);
    return v;
  }

  // Two's-complement little-endian integers as LONG1/LONG4 write them; wider than 64 bits they stay
  // an opaque "int" because checkpoints only use them in metadata that is reported, not read.
  PickleValue* make_long(const std::string& bytes) {
    if (bytes.size() > 8) return make_text(Kind::Object, "int");
    uint64_t value = 0;
    for (size_t i = bytes.size(); i-- > 0;) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
    if (!bytes.empty() && bytes.size() < 8 && (static_cast<unsigned char>(bytes.back()) & 0x80)) {
      value |= ~uint64_t{0} << (8 * bytes.size());
    }
    return make_int(static_cast<int64_t>(value));
  }

  // --- the stack; MARK sets a floor that ordinary pops may not cross, as in CPython ---
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  PickleValue* push(PickleValue* value) {
    stack_.push_back(value);
    return value;
  }
  PickleValue* top() {
    if (stack_.size() <= floor()) malformed("stack underflow");
    return stack_.back();
  }
  PickleValue* pop() {
    PickleValue* value = top();
    stack_.pop_back();
    return value;
  }
  std::vector<PickleValue*> pop_to_mark() {
    if (marks_.empty()) malformed("MARK missing (stack underflow)");
    std::vector<PickleValue*> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  std::vector<PickleValue*> pop_n(size_t n) {
    if (stack_.size() < floor() + n) malformed("stack underflow");
    std::vector<PickleValue*> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return items;
  }

  // --- containers ---
  // Dict keys that are scalars or short strings compare as in Python; any other key (a tuple, a long
  // string) compares by identity, which keeps each SETITEM cheap whatever a hostile file holds.
  static std::string key_of(const PickleValue* key) {
    char buffer[64];
    switch (key->kind) {
      case Kind::None: return "n";
      case Kind::Bool: return key->boolean ? "i1" : "i0";
      case Kind::Int: return "i" + std::to_string(key->integer);
      case Kind::Float:
        if (std::abs(key->number) < 9e18 && key->number == std::trunc(key->number)) {
          return "i" + std::to_string(static_cast<int64_t>(key->number));
        }
        std::snprintf(buffer, sizeof buffer, "f%a", key->number);
        return buffer;
      case Kind::String:
        if (key->text.size() <= 1024) return "s" + key->text;
        break;
      default: break;
    }
    std::snprintf(buffer, sizeof buffer, "p%p", static_cast<const void*>(key));
    return buffer;
  }
  void set_item(PickleValue* dict, PickleValue* key, PickleValue* value) {
    if (dict->kind == Kind::Object) return;  // Items of an opaque object are not kept.
    if (dict->kind != Kind::Dict) malformed("SETITEM on a " + pickle_kind_name(*dict));
    auto& index = dict_index_[dict];
    const auto [slot, inserted] = index.emplace(key_of(key), dict->entries.size());
    if (inserted) {
      dict->entries.emplace_back(key, value);
    } else {
      dict->entries[slot->second].second = value;
    }
  }
  void set_items(PickleValue* dict, const std::vector<PickleValue*>& items) {
    if (items.size() % 2 != 0) malformed("odd number of items for a dict");
    for (size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
  }
  void append_items(PickleValue* list, const std::vector<PickleValue*>& items) {
    if (list->kind == Kind::Object) return;
    if (list->kind != Kind::List && list->kind != Kind::Set) malformed("APPEND on a " + pickle_kind_name(*list));
    list->items.insert(list->items.end(), items.begin(), items.end());
  }

  // --- globals and calls ---
  PickleValue* global(std::string module, const std::string& name) {
    // Protocol 2 keeps Python 2 module names; pickle's fix_imports maps them the same way.
    if (module == "__builtin__") module = "builtins";
    if (module == "copy_reg") module = "copyreg";
    std::string full = module + "." + name;
    if (global_roles().count(full) == 0) {
      fail("asks for unknown global '" + printable(full) + "' (refused, nothing executed)");
    }
    return make_text(Kind::Global, std::move(full));
  }
  Role role_of(const PickleValue* callable) {
    if (callable->kind != Kind::Global) malformed("calls a " + pickle_kind_name(*callable) + ", not a global");
    return global_roles().at(callable->text);
  }
  std::vector<PickleValue*> tuple_items(const PickleValue* args) {
    if (args->kind != Kind::Tuple) malformed("call arguments are a " + pickle_kind_name(*args) + ", not a tuple");
    return args->items;
  }

  PickleValue* reduce(PickleValue* callable, PickleValue* args_value) {
    const Role role = role_of(callable);
    const std::vector<PickleValue*> args = tuple_items(args_value);
    switch (role) {
      case Role::OrderedDict: {
        PickleValue* dict = make(Kind::Dict);
        if (args.size() == 1 && (args[0]->kind == Kind::List || args[0]->kind == Kind::Tuple)) {
          charge(args[0]->items.size());
          for (PickleValue* pair : args[0]->items) {
            if ((pair->kind != Kind::Tuple && pair->kind != Kind::List) || pair->items.size() != 2) {
              malformed("OrderedDict item is not a pair");
            }
            set_item(dict, pair->items[0], pair->items[1]);
          }
        } else if (!args.empty()) {
          malformed("unexpected OrderedDict arguments");
        }
        return dict;
      }
      case Role::DefaultDict: return make(Kind::Dict);
      case Role::Set:
      case Role::FrozenSet: {
        if (args.empty()) return make(Kind::Set);
        const PickleValue* items = args[0];
        if (items->kind != Kind::List && items->kind != Kind::Tuple && items->kind != Kind::Set) {
          malformed("set built from a " + pickle_kind_name(*items));
        }
        return make_sequence(Kind::Set, items->items);
      }
      case Role::ByteArray:
      case Role::CodecsEncode: {
        if (args.empty()) return make(Kind::Bytes);
        if (args[0]->kind == Kind::Bytes) return make_text(Kind::Bytes, args[0]->text);
        std::string bytes;
        const bool latin1 = args.size() == 2 && args[0]->kind == Kind::String && args[1]->kind == Kind::String &&
                            (args[1]->text == "latin1" || args[1]->text == "latin-1");
        if (latin1 && latin1_from_utf8(args[0]->text, bytes)) return make_text(Kind::Bytes, std::move(bytes));
        return make_object(callable->text);
      }
      case Role::RebuildTensor: return rebuild_tensor(args);
      case Role::RebuildParameter:
        if (args.empty() || args[0]->kind != Kind::Tensor) malformed("parameter rebuilt from a non-tensor");
        return args[0];
      case Role::RebuildFromType: {
        // (function, class, arguments, state): only plain tensors and parameters are accepted.
        if (args.size() != 4 || args[0]->kind != Kind::Global || args[1]->kind != Kind::Global ||
            (args[1]->text != "torch.Tensor" && args[1]->text != "torch.nn.parameter.Parameter")) {
          malformed("unsupported _rebuild_from_type_v2 arguments");
        }
        const Role inner = role_of(args[0]);
        if (inner != Role::RebuildTensor && inner != Role::RebuildParameter) {
          malformed("_rebuild_from_type_v2 with '" + args[0]->text + "'");
        }
        return reduce(args[0], args[2]);
      }
      case Role::Opaque: {
        // numpy arrays are rebuilt by _reconstruct(ndarray, ...), so the class argument is the useful name.
        const std::string suffix = "._reconstruct";
        const std::string& name = callable->text;
        const bool reconstruct =
            name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (reconstruct && !args.empty() && args[0]->kind == Kind::Global) return make_object(args[0]->text);
        return make_object(name);
      }
      case Role::StorageType:
      case Role::Dtype:
      case Role::TypeReference: break;
    }
    malformed("calls '" + callable->text + "', which is not callable here");
  }

  PickleValue* new_object(PickleValue* cls) {
    switch (role_of(cls)) {
      case Role::Opaque: return make_object(cls->text);
      case Role::OrderedDict:
      case Role::DefaultDict: return make(Kind::Dict);
      case Role::Set:
      case Role::FrozenSet: return make(Kind::Set);
      default: malformed("creates a '" + cls->text + "' object, which is not allowed");
    }
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]):
  // a strided view of a loaded storage, checked to stay inside it before as_strided touches memory.
  PickleValue* rebuild_tensor(const std::vector<PickleValue*>& args) {
    if (args.size() < 6 || args.size() > 7 || args[0]->kind != Kind::Storage || args[1]->kind != Kind::Int ||
        args[2]->kind != Kind::Tuple || args[3]->kind != Kind::Tuple) {
      malformed("bad _rebuild_tensor_v2 arguments");
    }
    const at::Tensor& storage = args[0]->tensor;
    const int64_t offset = args[1]->integer;
    std::vector<int64_t> sizes;
    std::vector<int64_t> strides;
    for (const PickleValue* item : args[2]->items) sizes.push_back(item->kind == Kind::Int ? item->integer : -1);
    for (const PickleValue* item : args[3]->items) strides.push_back(item->kind == Kind::Int ? item->integer : -1);
    if (sizes.size() != strides.size() || sizes.size() > 64 || offset < 0) malformed("bad tensor size or stride");
    bool empty = false;
    int64_t last = offset;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] < 0 || strides[d] < 0) malformed("negative tensor size or stride");
      empty = empty || sizes[d] == 0;
      int64_t reach = 0;
      if (sizes[d] > 0 && (__builtin_mul_overflow(sizes[d] - 1, strides[d], &reach) ||
                           __builtin_add_overflow(last, reach, &last))) {
        malformed("tensor size overflows");
      }
    }
    PickleValue* tensor = make(Kind::Tensor);
    if (empty) {
      tensor->tensor = at::empty(sizes, storage.options());
      return tensor;
    }
    if (last >= storage.numel()) {
      malformed("tensor view reaches element " + std::to_string(last) + " of a storage of " +
                std::to_string(storage.numel()) + " elements (bad offset or size)");
    }
    at::Tensor view = storage.as_strided(sizes, strides, offset);
    // A view covering its whole storage is kept as is; any other is copied so that it neither holds
    // the rest of the storage alive nor stays non-contiguous.
    const bool whole = offset == 0 && view.numel() == storage.numel() && view.is_contiguous();
    if (!whole) charge_copy(sizes, storage);
    tensor->tensor = whole ? view : view.clone(at::MemoryFormat::Contiguous);
    return tensor;
  }

  // Copies of views may not add up to much more than the storages they come from: a stride-0 view of a
  // 4-float storage as (2^27, 4) would otherwise be cloned to 2 GiB. Checked before anything is copied.
  void charge_copy(const std::vector<int64_t>& sizes, const at::Tensor& storage) {
    uint64_t n_bytes = storage.element_size();
    for (int64_t size : sizes) {
      if (__builtin_mul_overflow(n_bytes, static_cast<uint64_t>(size), &n_bytes)) n_bytes = UINT64_MAX;
    }
    if (__builtin_add_overflow(copied_bytes_, n_bytes, &copied_bytes_)) copied_bytes_ = UINT64_MAX;
    if (copied_bytes_ > storage_bytes_ + kMaxViewCopyBytes) {
      malformed("tensor views copy " + std::to_string(copied_bytes_) + " bytes out of " +
                std::to_string(storage_bytes_) + " bytes of storage, more than the limit of " +
                byte_count(kMaxViewCopyBytes) + " beyond the storage (stride-0 or overlapping views)");
    }
  }

  // Persistent ids are ('storage', storage_type, key, location, numel); each key is loaded once and
  // shared by every view of it.
  PickleValue* persistent_load(const PickleValue* pid) {
    const auto& f = pid->items;
    if (pid->kind != Kind::Tuple || f.size() != 5 || f[0]->kind != Kind::String || f[0]->text != "storage" ||
        f[1]->kind != Kind::Global || global_roles().at(f[1]->text) != Role::StorageType ||
        f[2]->kind != Kind::String || f[4]->kind != Kind::Int || f[4]->integer < 0) {
      malformed("persistent id is not ('storage', type, key, location, numel)");
    }
    const at::ScalarType dtype = storage_dtype(f[1]->text);
    const std::string& key = f[2]->text;
    const int64_t numel = f[4]->integer;
    auto found = storages_.find(key);
    if (found != storages_.end()) {
      const at::Tensor& known = found->second->tensor;
      if (known.scalar_type() != dtype || known.numel() != numel) {
        malformed("storage '" + printable(key) + "' is used with two different types or sizes");
      }
      return found->second;
    }
    PickleValue* storage = make(Kind::Storage);
    storage->tensor = load_storage_(key, dtype, numel);
    if (!storage->tensor.defined() || storage->tensor.dim() != 1 || storage->tensor.numel() != numel ||
        storage->tensor.scalar_type() != dtype) {
      malformed("storage '" + printable(key) + "' was not loaded as " + std::to_string(numel) + " elements");
    }
    storages_[key] = storage;
    storage_bytes_ += static_cast<uint64_t>(storage->tensor.nbytes());
    return storage;
  }

  PickleValue* memo_get(uint64_t index) {
    charge(1);
    auto found = memo_.find(index);
    if (found == memo_.end()) malformed("memo index " + std::to_string(index) + " was never stored");
    return found->second;
  }

  void step(uint8_t op);

  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  const std::string& source_;
  const StorageLoader& load_storage_;
  std::unique_ptr<std::deque<PickleValue>> values_;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleValue*> memo_;
  std::unordered_map<const PickleValue*, std::unordered_map<std::string, size_t>> dict_index_;
  std::map<std::string, PickleValue*> storages_;
  uint64_t charged_ = 0;       // values built and shared values used, against kMaxPickleValues
  uint64_t storage_bytes_ = 0;  // bytes of all storages loaded
  uint64_t copied_bytes_ = 0;   // bytes of all view copies, against storage_bytes_ + kMaxViewCopyBytes
  std::unordered_map<const PickleValue*, Expansion> expansions_;
};

void Unpickler::step(uint8_t op) {
  switch (op) {
    case 0x80: {  // PROTO
      const uint64_t protocol = read_uint(1);
      if (protocol > 5) malformed("protocol " + std::to_string(protocol) + " is not supported");
      return;
    }
    case 0x95: {  // FRAME: framing is only a hint for buffered readers; the data is already in memory.
      const uint64_t length = read_uint(8);
      if (length > size_ - pos_) malformed("frame length exceeds the data");
      return;
    }
    case '(':
      if (marks_.size() >= static_cast<size_t>(kMaxPickleDepth)) {
        fail("nests MARKs deeper than " + std::to_string(kMaxPickleDepth) + " levels (limit)");
      }
      marks_.push_back(stack_.size());
      return;
    case '0':  // POP drops the top item, or the topmost MARK when nothing is above it
      if (stack_.size() > floor()) return stack_.pop_back();
      pop_to_mark();
      return;
    case '1': pop_to_mark(); return;
    case '2':
      charge(1);
      push(top());
      return;
    case 'N': push(make(Kind::None)); return;
    case 0x88:
    case 0x89: push(make(Kind::Bool))->boolean = op == 0x88; return;
    case 'J': push(make_int(static_cast<int32_t>(read_uint(4)))); return;
    case 'K': push(make_int(static_cast<int64_t>(read_uint(1)))); return;
    case 'M': push(make_int(static_cast<int64_t>(read_uint(2)))); return;
    case 0x8a: push(make_long(read_bytes(read_uint(1)))); return;
    case 0x8b: push(make_long(read_bytes(read_signed_length()))); return;
    case 'G': {
      const std::string bytes = read_bytes(8);
      uint64_t bits = 0;
      for (unsigned char c : bytes) bits = (bits << 8) | c;  // big-endian, unlike every other number
      PickleValue* v = make(Kind::Float);
      std::memcpy(&v->number, &bits, sizeof bits);
      push(v);
      return;
    }
    case 'X': push(make_text(Kind::String, read_bytes(read_uint(4)))); return;
    case 0x8c: push(make_text(Kind::String, read_bytes(read_uint(1)))); return;
    case 0x8d: push(make_text(Kind::String, read_bytes(read_uint(8)))); return;
    case 'U': push(make_text(Kind::String, read_bytes(read_uint(1)))); return;
    case 'T': push(make_text(Kind::String, read_bytes(read_signed_length()))); return;
    case 'B': push(make_text(Kind::Bytes, read_bytes(read_uint(4)))); return;
    case 'C': push(make_text(Kind::Bytes, read_bytes(read_uint(1)))); return;
    case 0x8e:
    case 0x96: push(make_text(Kind::Bytes, read_bytes(read_uint(8)))); return;
    case ')': push(make(Kind::Tuple)); return;
    case 't': push(make_sequence(Kind::Tuple, pop_to_mark())); return;
    case 0x85:
    case 0x86:
    case 0x87: push(make_sequence(Kind::Tuple, pop_n(op - 0x84))); return;
    case ']': push(make(Kind::List)); return;
    case 'l': push(make_sequence(Kind::List, pop_to_mark())); return;
    case 'a': {
      PickleValue* item = pop();
      return append_items(top(), {item});
    }
    case 'e': {
      const std::vector<PickleValue*> items = pop_to_mark();
      return append_items(top(), items);
    }
    case '}': push(make(Kind::Dict)); return;
    case 'd': return set_items(push(make(Kind::Dict)), pop_to_mark());
    case 's': {
      PickleValue* value = pop();
      PickleValue* key = pop();
      return set_item(top(), key, value);
    }
    case 'u': {
      const std::vector<PickleValue*> items = pop_to_mark();
      return set_items(top(), items);
    }
    case 0x8f: push(make(Kind::Set)); return;
    case 0x90: {
      const std::vector<PickleValue*> items = pop_to_mark();
      return append_items(top(), items);
    }
    case 0x91: push(make_sequence(Kind::Set, pop_to_mark())); return;
    case 'q': memo_[read_uint(1)] = top(); return;
    case 'r': memo_[read_uint(4)] = top(); return;
    case 0x94: memo_[memo_.size()] = top(); return;
    case 'h': push(memo_get(read_uint(1))); return;
    case 'j': push(memo_get(read_uint(4))); return;
    case 'c': {
      std::string module = read_line();
      push(global(std::move(module), read_line()));
      return;
    }
    case 0x93: {
      PickleValue* name = pop();
      PickleValue* module = pop();
      if (module->kind != Kind::String || name->kind != Kind::String) malformed("STACK_GLOBAL needs two strings");
      push(global(module->text, name->text));
      return;
    }
    case 'R': {
      PickleValue* args = pop();
      PickleValue* callable = pop();
      push(reduce(callable, args));
      return;
    }
    case 0x81:  // NEWOBJ and NEWOBJ_EX: the arguments of cls.__new__ are unused, nothing is constructed
      pop();
      push(new_object(pop()));
      return;
    case 0x92:
      pop_n(2);
      push(new_object(pop()));
      return;
    case 'b':  // BUILD: the __setstate__ state is dropped, opaque objects keep only their class name
      pop();
      top();
      return;
    case 'Q': push(persistent_load(pop())); return;
    default: break;
  }
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", op);
  malformed(std::string("opcode ") + hex + " is unknown or not supported");
}

}  // namespace

PickleTree unpickle(const char* data, size_t size, const std::string& source, const StorageLoader& load_storage) {
  return Unpickler(data, size, source, load_storage).run();
}

std::string pickle_kind_name(const PickleValue& value) {
  switch (value.kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Set: return "set";
    case Kind::Dict: return "dict";
    case Kind::Object:
    case Kind::Global: return value.text;
    case Kind::Storage: return "torch.storage";
    case Kind::Tensor: return "torch.Tensor";
  }
  return "unknown";
}

}  // namespace vitprobe
