// The vitprobe command line: parses options into the engine's structs and turns errors into exit codes.
#include <c10/util/Exception.h>

#include <algorithm>
#include <new>
#include <iostream>
#include <string>
#include <vector>

#include "cli_common.h"
#include "common/heap.h"
#include "common/errors.h"
#include "jobs/machine.h"

namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// An allocation that failed is caused by what was asked (sizes in the options or the inputs), not a fault of
// the program: exit 2 with the options that set the sizes named, not "std::bad_alloc" and exit 4.
const char* const kOutOfMemory = "out of memory: lower --batch/--batch-size, --workers or --img-size/--crop/--resize";

}  // namespace

int main(int argc, char** argv) {
  using namespace vitprobe;
  keep_freed_memory_in_heap();  // no page faults on every forward's activations (common/heap.h)
  CLI::App app{"vitprobe: how good is a frozen ViT encoder, and where does its information live?", "vitprobe"};
  // The version with what a figure depends on: libtorch, CUDA devices, CPU features and the kernels chosen.
  app.set_version_flag("--version", [] { return "vitprobe " + std::string(VITPROBE_VERSION) + "\n" + machine_text(); });
  app.require_subcommand(1);
  std::vector<cli::Subcommand> subcommands = {
      cli::register_inspect(app),
      cli::register_forward(app),
      cli::register_data(app),
      cli::register_attn_stats(app),
      cli::register_maps(app),
      cli::register_embed(app),
      cli::register_bench(app),
      cli::register_demo(app),
      cli::register_pretrain(app),
      cli::register_probe(app),
      cli::register_evaluate(app),
      cli::register_extract(app),
      cli::register_launch(app),
  };
  // CLI11 would only say "a subcommand is required" for a misspelt one: name it.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string name = argv[1];
    const bool known = std::any_of(subcommands.begin(), subcommands.end(),
                                   [&](const cli::Subcommand& subcommand) { return subcommand.app->get_name() == name; });
    if (!known) {
      std::cerr << "vitprobe: error: unknown subcommand '" << name << "' (see vitprobe --help)\n";
      return kExitBadInput;
    }
  }
  // `launch ... -- COMMAND`: the command after "--" is the ranks', not launch's options.
  std::vector<char*> arguments(argv, argv + argc);
  if (argc > 1 && std::string(argv[1]) == "launch") {
    const auto dash = std::find_if(arguments.begin() + 2, arguments.end(), [](const char* a) { return std::string(a) == "--"; });
    if (dash != arguments.end()) {
      for (auto it = dash + 1; it != arguments.end(); ++it) cli::launch_command().emplace_back(*it);
      arguments.erase(dash, arguments.end());
    }
  }
  try {
    app.parse(static_cast<int>(arguments.size()), arguments.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "vitprobe: error: " << first_line(e.what()) << " (see vitprobe --help)\n";
    return kExitBadInput;
  }
  for (const auto& subcommand : subcommands) {
    if (!subcommand.app->parsed()) continue;
    const std::string prefix = "vitprobe " + subcommand.app->get_name() + ": error: ";
    try {
      return subcommand.run();
    } catch (const BadInput& e) {
      std::cerr << prefix << first_line(e.what()) << "\n";
      return kExitBadInput;
    } catch (const IoError& e) {
      std::cerr << prefix << first_line(e.what()) << "\n";
      return kExitIoError;
    } catch (const std::bad_alloc&) {
      std::cerr << prefix << kOutOfMemory << "\n";
      return kExitBadInput;
    } catch (const c10::Error& e) {
      const std::string text = first_line(e.what_without_backtrace());
      if (text.find("can't allocate memory") != std::string::npos) {  // libtorch's CPU allocator
        // "...: you tried to allocate N bytes. Error code 12 (Cannot allocate memory)": keep N bytes.
        const auto tried = text.find("allocate ", text.find("you tried"));
        const auto bytes = tried == std::string::npos ? std::string() : text.substr(tried + 9, text.find(" bytes", tried) - tried - 9);
        std::cerr << prefix << kOutOfMemory << (bytes.empty() ? "" : " (" + bytes + " bytes asked at once)") << "\n";
        return kExitBadInput;
      }
      std::cerr << prefix << text << "\n";
      return kExitInternal;
    } catch (const std::exception& e) {
      std::cerr << prefix << first_line(e.what()) << "\n";
      return kExitInternal;
    }
  }
  return 0;
}
