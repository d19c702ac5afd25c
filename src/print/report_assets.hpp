// The HTML report's inline pieces (plan_html.cpp): the head with its CSS and a
// Content-Security-Policy that allows no fetch at all, the parameter browser's markup, and its
// script (filter by name or /regex/, click a parameter or a cell for its provenance).
#pragma once

#include <string>

namespace layerfreeze {

std::string report_head(const std::string& title);
std::string report_browser();
std::string report_script();

}  // namespace layerfreeze
