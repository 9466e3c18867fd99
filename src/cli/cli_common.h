#pragma once
// Pieces every subcommand shares: the option groups (model loading, preprocessing, threads) and the way a
// subcommand is registered with the top-level app.
#include <CLI/CLI.hpp>

#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "jobs/job_options.h"

namespace vitprobe {
struct FeatureOptions;  // jobs/feature_setup.h
}  // namespace vitprobe

namespace vitprobe::cli {

// Numeric option checks (issue 18): every numeric option of every command takes one of these. Each refuses
// NaN and inf (CLI11's Range and PositiveNumber let NaN through, and print DBL_MAX in full) and fails with one
// short line naming the option and the value: "--batch: 0 must be between 1 and 65536". Text that is not a
// number is left to CLI11's conversion, which names the option too.

/// Largest --batch / --batch-size: far beyond what a forward of one ViT batch fits in memory anyway.
constexpr double kMaxBatch = 65536;
/// Largest --img-size / --resize / --crop side: one 8192^2 RGB float image is 805 MB already, and a ViT at
/// 8192 pixels with 16-pixel patches has 262144 tokens.
constexpr double kMaxImageSide = 8192;
/// Largest thread or worker count: 4x the hardware threads (oversubscription beyond that only adds
/// contention, and at::set_num_threads(100000) never returns), at most 1024 (1024 when unknown).
int max_threads();

/// A finite number in [lo, hi] (lo_open / hi_open: the bound itself excluded). `description` is what --help
/// shows after the type (INT:...); empty: made from the bounds.
CLI::Validator number_in(double lo, double hi, bool lo_open = false, bool hi_open = false, std::string description = "");
/// A finite number > 0, at most `hi`.
CLI::Validator positive(double hi = std::numeric_limits<double>::infinity());
/// A finite number >= 0, at most `hi`.
CLI::Validator non_negative(double hi = std::numeric_limits<double>::infinity());
/// Any finite number.
CLI::Validator finite();
/// A thread count: 0 (all cores) to max_threads(); `lo` 1 for worker counts that have no "all cores".
CLI::Validator thread_count(int lo = 0);
/// "R,G,B": three finite numbers, each > 0 when `positive` (a std of 0 divides by zero).
CLI::Validator rgb_triplet(bool positive);

/// A registered subcommand: its parser and the action run after a successful parse.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

/// Adds --device (cpu, cuda, cuda:N), refused at parse time when the device is not there (jobs/machine.h).
void add_device_option(CLI::App& app, std::string& device);

/// Adds --format --arch --num-heads --img-size --dtype --device --backend --allow-nonfinite, filling `options`.
void add_load_options(CLI::App& app, LoadOptions& options);

/// Raw text of the preprocessing flags, turned into PreprocessSettings after parsing.
struct PreprocessFlags {
  std::string mean, std, interpolation;
  int resize = 0, crop = 0;
  CLI::Option *mean_option = nullptr, *std_option = nullptr, *interpolation_option = nullptr;
  CLI::Option *resize_option = nullptr, *crop_option = nullptr;
  /// The settings the user gave (unset flags stay unset, so checkpoint metadata can fill them).
  PreprocessSettings settings() const;
};

/// Adds --mean --std --resize --crop --interpolation.
void add_preprocess_options(CLI::App& app, PreprocessFlags& flags);

/// The encoder options of the analysis commands (attn-stats, maps, embed): add_load_options with --dtype
/// defaulting to bf16 only where the CPU has native bf16, then preprocessing and --threads. Returns --dtype,
/// so the command can tell whether the user chose one.
CLI::Option* add_analysis_encoder_options(CLI::App& app, LoadOptions& load, PreprocessFlags& preprocess, int& threads);

/// --data --split --limit --seed --class-names of attn-stats and embed (the dataset of one pass).
void add_analysis_data_options(CLI::App& app, DatasetSpec& data, std::string& class_names);

/// Adds --threads (default: all cores).
void add_threads_option(CLI::App& app, int& threads);

/// Sets libtorch's intra-op thread count (it defaults to one thread on this machine); 0 = all cores, shared
/// among the processes of this host when several ranks run here (LOCAL_WORLD_SIZE).
void apply_threads(int threads);

/// Adds --rank --world-size --master --dist-timeout (group "Distributed"); unset ones come from RANK,
/// WORLD_SIZE, MASTER_ADDR, MASTER_PORT as torchrun and `vitprobe launch` set them.
void add_dist_options(CLI::App& app, DistOptions& options);
/// Whether this process prints the command's output (rank 0, or no distributed run at all).
bool prints_output(const DistOptions& options);

Subcommand register_inspect(CLI::App& parent);
Subcommand register_forward(CLI::App& parent);
Subcommand register_data(CLI::App& parent);
Subcommand register_attn_stats(CLI::App& parent);
Subcommand register_maps(CLI::App& parent);
Subcommand register_embed(CLI::App& parent);
Subcommand register_bench(CLI::App& parent);
Subcommand register_demo(CLI::App& parent);
Subcommand register_pretrain(CLI::App& parent);
Subcommand register_probe(CLI::App& parent);
Subcommand register_evaluate(CLI::App& parent);
Subcommand register_extract(CLI::App& parent);
Subcommand register_launch(CLI::App& parent);
/// What `vitprobe launch ... -- COMMAND` runs: main() takes everything after "--" out of the arguments
/// before CLI11 parses the rest.
std::vector<std::string>& launch_command();
/// Adds --model --data --train-split --val-split --limit --val-limit --limit-seed --block --final-norm --cache-dir
/// --batch --workers --quiet, the load options (without the --heads alias of --num-heads) and preprocessing
/// (shared by probe, evaluate and extract; defined in cmd_probe.cpp).
void add_feature_options(CLI::App& app, FeatureOptions& options, PreprocessFlags& preprocess, std::string& final_norm);
/// add_load_options with --num-heads only, since --heads names probe heads.
void add_probe_load_options(CLI::App& app, LoadOptions& options);

}  // namespace vitprobe::cli
