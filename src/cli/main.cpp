// The vitprobe command line: parses options into the engine's structs and turns errors into exit codes.
#include <c10/util/Exception.h>

#include <iostream>
#include <vector>

#include "cli_common.h"
#include "common/errors.h"

namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  using namespace vitprobe;
  CLI::App app{"vitprobe: how good is a frozen ViT encoder, and where does its information live?", "vitprobe"};
  app.set_version_flag("--version", std::string(VITPROBE_VERSION));
  app.require_subcommand(1);
  std::vector<cli::Subcommand> subcommands = {cli::register_inspect(app), cli::register_forward(app)};
  try {
    app.parse(argc, argv);
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
    } catch (const c10::Error& e) {
      std::cerr << prefix << first_line(e.what_without_backtrace()) << "\n";
      return kExitInternal;
    } catch (const std::exception& e) {
      std::cerr << prefix << first_line(e.what()) << "\n";
      return kExitInternal;
    }
  }
  return 0;
}
