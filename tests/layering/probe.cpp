// SPDX-License-Identifier: GPL-3.0-or-later
//
// Compiled once per rule of tests/layering/CMakeLists.txt, against one core layer, with
// ENHANCE_PROBE_HEADER naming a header of another layer (or of the plugin). The layers'
// include paths decide whether it compiles.
#include ENHANCE_PROBE_HEADER

int EnhanceLayeringProbe() { return 0; }
