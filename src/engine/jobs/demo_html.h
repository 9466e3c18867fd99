#pragma once
// The demo report's markdown and its self-contained HTML rendering: heading levels of embedded documents,
// and a small markdown subset (headings, paragraphs, lists, tables, images, inline code) turned into HTML
// whose images are data URIs, so index.html refers to no other file.
#include <functional>
#include <string>

namespace vitprobe {

/// Standard base64 (RFC 4648, with padding) of `bytes`.
std::string base64(const std::string& bytes);

/// `markdown` with every ATX heading (a line starting with '#') moved `levels` deeper, outside fenced code
/// blocks: "# Probe results" becomes "### Probe results" for levels 2.
std::string demote_headings(const std::string& markdown, int levels);

/// Turns an image path of the markdown into the `src` of its <img> (a data URI); throws when it cannot.
using ImageSource = std::function<std::string(const std::string& path)>;

/// The HTML body of `markdown`: "#".."######" headings as h1..h6, "| a | b |" tables (first row the header,
/// "|---|" rules dropped, `\|` a pipe inside a cell), "- " lists, a line "![alt](path)" as an <img> whose src
/// is image_source(path), `code` spans, other lines as paragraphs; text is HTML-escaped.
std::string markdown_to_html(const std::string& markdown, const ImageSource& image_source);

/// A data URI of a PNG or SVG file's bytes, by the file's extension; throws BadInput for another extension.
std::string image_data_uri(const std::string& file, const std::string& bytes);

}  // namespace vitprobe
