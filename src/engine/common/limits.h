#pragma once
// Limits on every size that an input file decides. Each one is far above what real checkpoints, images
// and datasets need and low enough that a hostile file stays well under 1 GB of memory; every reader that
// hits one fails with a one-line error naming the file and the limit.
#include <cstdint>
#include <string>

namespace vitprobe {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// --- torch.save pickles (checkpoint/pickle.cpp) ---
/// Bytes of a data.pkl record: real ones are well under 10 MB even with optimizer state.
constexpr uint64_t kMaxPickleBytes = 256 * kMiB;
/// Values the unpickler builds, with every memo get and DUP counted as one more value and every container
/// built from another (frozenset(list), OrderedDict(pairs)) counted by its items.
constexpr uint64_t kMaxPickleValues = 2'000'000;
/// Nesting of containers (and of MARKs): checkpoints nest a handful of levels.
constexpr int kMaxPickleDepth = 100;
/// Size of the unpickled tree as the checkpoint walk expands it: the key-path elements of all its
/// leaves, with a shared value counted once per use (as separate objects in PyTorch's unpickler would be).
constexpr uint64_t kMaxPickleExpandedValues = 4'000'000;
/// Bytes that tensor views may copy beyond the bytes of the storages they view (stride 0, overlapping views).
constexpr uint64_t kMaxViewCopyBytes = 64 * kMiB;

// --- zip archives (checkpoint/torch_archive.cpp, checkpoint/zip_directory.cpp) ---
/// Entries of a torch.save archive: one per storage plus a few records.
constexpr uint64_t kMaxZipEntries = 1'000'000;
/// Inflated / compressed size of a deflated record; real tensor data compresses ~1.1x, zeros ~1000x.
constexpr uint64_t kMaxCompressionRatio = 100;
/// Records below this inflated size are not held to the ratio (a small all-zero bias is fine).
constexpr uint64_t kCompressionRatioExemptBytes = 4 * kMiB;

// --- safetensors (checkpoint/safetensors.cpp) ---
/// The JSON header; the reference implementation refuses more than 100 MB.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// --- images (image/) ---
/// Default pixel limit of a decoded image: Pillow's MAX_IMAGE_PIXELS (its DecompressionBombError limit).
constexpr uint64_t kDefaultMaxImagePixels = 178'956'970;
/// Environment variable overriding kDefaultMaxImagePixels (a positive integer).
constexpr const char* kMaxImagePixelsVariable = "VITPROBE_MAX_IMAGE_PIXELS";
/// The pixel limit in force: VITPROBE_MAX_IMAGE_PIXELS when set, else kDefaultMaxImagePixels; BadInput when
/// the variable is not a positive integer.
uint64_t max_image_pixels();
/// Output pixels of one resize: a 224 crop needs 50 k; a 1 x 32768 strip resized to a 256 shorter side
/// would need 2.1 G.
constexpr uint64_t kMaxResizeOutputPixels = uint64_t{1} << 26;

// --- datasets (data/) ---
/// Inflated bytes of one dataset file (IDX, CIFAR/STL binaries); the largest (EMNIST by-class) is 550 MB.
constexpr uint64_t kMaxDatasetFileBytes = 768 * kMiB;
/// Records of one CIFAR binary file: CIFAR-10 batches hold 10000, CIFAR-100's train.bin 50000.
constexpr uint64_t kMaxCifarRecordsPerFile = 60'000;
/// Bytes of a text file read whole (class-name lists, file lists).
constexpr uint64_t kMaxTextFileBytes = 256 * kMiB;

/// "N MiB" or "N bytes", for limit messages.
std::string byte_count(uint64_t bytes);

}  // namespace vitprobe
