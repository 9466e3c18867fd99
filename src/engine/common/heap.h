#pragma once
// Process-wide allocator settings for repeated encoder forwards.

namespace vitprobe {

/// Keeps freed activation buffers in the heap: by default glibc hands large freed blocks back to the kernel
/// (munmap, heap trimming), so every forward faults its activations in again, zeroed page by page (measured:
/// ~98,000 page faults per ViT-S/16 batch-16 forward). Afterwards blocks up to 32 MiB (glibc's largest mmap
/// threshold) come from the heap, and the heap is not trimmed. Call once, early (the CLI's main, benchmarks).
void keep_freed_memory_in_heap();

}  // namespace vitprobe
