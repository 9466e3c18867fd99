#include "jobs/demo_html.h"

#include <cstdint>
#include <sstream>
#include <vector>

#include "common/errors.h"

namespace vitprobe {
namespace {

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Escaped text with `code` spans as <code>.
std::string inline_html(const std::string& text) {
  std::string out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find('`', at);
    const size_t close = open == std::string::npos ? std::string::npos : text.find('`', open + 1);
    if (close == std::string::npos) {
      out += html_escape(text.substr(at));
      break;
    }
    out += html_escape(text.substr(at, open - at)) + "<code>" + html_escape(text.substr(open + 1, close - open - 1)) + "</code>";
    at = close + 1;
  }
  return out;
}

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// The number of leading '#' of an ATX heading ("## x"), 0 when the line is none.
int heading_level(const std::string& line) {
  size_t level = 0;
  while (level < line.size() && line[level] == '#') ++level;
  return level > 0 && level <= 6 && level < line.size() && line[level] == ' ' ? static_cast<int>(level) : 0;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The cells of a table row without its outer pipes: split on '|' except an escaped `\|`, which becomes a
// '|' of the cell's text (demo_job's cell() escapes pipes so).
std::vector<std::string> table_cells(const std::string& row) {
  std::vector<std::string> cells(1);
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == '\\' && i + 1 < row.size() && row[i + 1] == '|') {
      cells.back() += '|';
      ++i;
    } else if (row[i] == '|') {
      cells.emplace_back();
    } else {
      cells.back() += row[i];
    }
  }
  return cells;
}

}  // namespace

std::string base64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += alphabet[(v >> shift) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string demote_headings(const std::string& markdown, int levels) {
  std::istringstream in(markdown);
  std::string out, line;
  bool fenced = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) fenced = !fenced;
    if (!fenced && heading_level(line) > 0) line = std::string(static_cast<size_t>(levels), '#') + line;
    out += line + "\n";
  }
  if (!markdown.empty() && markdown.back() != '\n' && !out.empty()) out.pop_back();
  return out;
}

std::string markdown_to_html(const std::string& markdown, const ImageSource& image_source) {
  std::istringstream in(markdown);
  std::string html, line;
  enum class Block { None, Table, List } block = Block::None;
  auto close = [&]() {
    if (block == Block::Table) html += "</table>\n";
    if (block == Block::List) html += "</ul>\n";
    block = Block::None;
  };
  while (std::getline(in, line)) {
    const bool row = line.size() > 1 && line.front() == '|';
    if (row) {
      if (line.find("---") != std::string::npos && line.find_first_not_of("|-: ") == std::string::npos) continue;
      const bool header = block != Block::Table;
      if (header) {
        close();
        html += "<table>\n";
        block = Block::Table;
      }
      html += "<tr>";
      std::string cells = line.substr(1);
      if (!cells.empty() && cells.back() == '|' && !(cells.size() > 1 && cells[cells.size() - 2] == '\\')) cells.pop_back();
      for (const auto& cell : table_cells(cells)) {
        html += (header ? "<th>" : "<td>") + inline_html(trim(cell)) + (header ? "</th>" : "</td>");
      }
      html += "</tr>\n";
      continue;
    }
    if (line.rfind("- ", 0) == 0) {
      if (block != Block::List) {
        close();
        html += "<ul>\n";
        block = Block::List;
      }
      html += "<li>" + inline_html(line.substr(2)) + "</li>\n";
      continue;
    }
    close();
    const int level = heading_level(line);
    if (level > 0) {
      const std::string tag = "h" + std::to_string(level);
      html += "<" + tag + ">" + inline_html(line.substr(static_cast<size_t>(level) + 1)) + "</" + tag + ">\n";
    } else if (line.rfind("![", 0) == 0 && line.find("](") != std::string::npos && line.back() == ')') {
      const size_t middle = line.find("](");
      const std::string alt = line.substr(2, middle - 2), path = line.substr(middle + 2, line.size() - middle - 3);
      html += "<p><img alt=\"" + html_escape(alt) + "\" style=\"max-width:100%\" src=\"" + image_source(path) + "\"></p>\n";
    } else if (!trim(line).empty()) {
      html += "<p>" + inline_html(line) + "</p>\n";
    }
  }
  close();
  return html;
}

std::string image_data_uri(const std::string& file, const std::string& bytes) {
  if (ends_with(file, ".png")) return "data:image/png;base64," + base64(bytes);
  if (ends_with(file, ".svg")) return "data:image/svg+xml;base64," + base64(bytes);
  throw BadInput(file + ": the report embeds PNG or SVG images only");
}

}  // namespace vitprobe
