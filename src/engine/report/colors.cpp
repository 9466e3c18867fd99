#include "report/colors.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "common/errors.h"

namespace vitprobe {
namespace {

constexpr std::array<uint32_t, 10> kTab10 = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                             0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

Rgb from_hex(uint32_t hex) {
  return {((hex >> 16) & 0xff) / 255.0, ((hex >> 8) & 0xff) / 255.0, (hex & 0xff) / 255.0};
}

Rgb from_hsv(double hue, double saturation, double value) {
  const double h = std::fmod(hue, 1.0) * 6.0;
  const int sector = static_cast<int>(h);
  const double f = h - sector;
  const double p = value * (1 - saturation), q = value * (1 - saturation * f), t = value * (1 - saturation * (1 - f));
  switch (sector % 6) {
    case 0: return {value, t, p};
    case 1: return {q, value, p};
    case 2: return {p, value, t};
    case 3: return {p, q, value};
    case 4: return {t, p, value};
    default: return {value, p, q};
  }
}

// Degree-6 polynomial fits of matplotlib's viridis and inferno (Matt Zucker's public-domain fits,
// within about 1/255 of the tabulated maps): colour(t) = c0 + c1 t + ... + c6 t^6.
using Polynomial = std::array<std::array<double, 3>, 7>;
constexpr Polynomial kViridis = {{{0.2777273272234177, 0.005407344544966578, 0.3340998053353061},
                                  {0.1050930431085774, 1.404613529898575, 1.384590162594685},
                                  {-0.3308618287255563, 0.214847559468213, 0.09509516302823659},
                                  {-4.634230498983486, -5.799100973351585, -19.33244095627987},
                                  {6.228269936347081, 14.17993336680509, 56.69055260068105},
                                  {4.776384997670288, -13.74514537774601, -65.35303263337234},
                                  {-5.435455855934631, 4.645852612178535, 26.3124352495832}}};
constexpr Polynomial kInferno = {{{0.0002189403691192265, 0.001651004631001012, -0.01948089843709184},
                                  {0.1065134194856116, 0.5639564367884091, 3.932712388889277},
                                  {11.60249308247187, -3.972853965665698, -15.9423941062914},
                                  {-41.70399613139459, 17.43639888205313, 44.35414519872813},
                                  {77.162935699427, -33.40235894210092, -81.80730925738993},
                                  {-71.31942824499214, 32.62606426397723, 73.20951985803202},
                                  {25.13112622477341, -12.24266895238567, -23.07032500287172}}};

}  // namespace

Rgb category_color(int64_t index) {
  if (index < 0) index = -index;
  if (index < static_cast<int64_t>(kTab10.size())) return from_hex(kTab10[static_cast<size_t>(index)]);
  // Golden-ratio hue steps keep neighbours apart; three lightness levels separate hues that come close.
  const double hue = std::fmod(0.13 + 0.618033988749895 * static_cast<double>(index), 1.0);
  const int level = static_cast<int>(index % 3);
  return from_hsv(hue, level == 1 ? 0.55 : 0.8, level == 2 ? 0.6 : 0.9);
}

ColorMap parse_color_map(const std::string& name) {
  if (name == "viridis") return ColorMap::Viridis;
  if (name == "inferno") return ColorMap::Inferno;
  throw BadInput("colour map '" + name + "': expected viridis or inferno");
}

Rgb map_color(ColorMap map, double value) {
  const double t = std::isfinite(value) ? std::clamp(value, 0.0, 1.0) : 0.0;
  const Polynomial& c = map == ColorMap::Viridis ? kViridis : kInferno;
  std::array<double, 3> out{};
  for (int channel = 0; channel < 3; ++channel) {
    double sum = 0;
    for (int power = 6; power >= 0; --power) sum = sum * t + c[power][channel];
    out[channel] = std::clamp(sum, 0.0, 1.0);
  }
  return {out[0], out[1], out[2]};
}

}  // namespace vitprobe
