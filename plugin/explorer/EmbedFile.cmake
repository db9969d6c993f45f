# Writes a C++ header holding a file's bytes as a NUL-terminated array, so that a script
# can be compiled into the plugin without escaping it by hand.
# Usage: cmake -DINPUT=file -DOUTPUT=header -DSYMBOL=name -P EmbedFile.cmake
# SPDX-License-Identifier: GPL-3.0-or-later
file(READ "${INPUT}" bytes HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${bytes}")
# Sixteen bytes a line keep the generated header readable in a debugger or a diff.
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen)
string(REGEX REPLACE "(${sixteen})" "\\1\n    " bytes "${bytes}")
get_filename_component(name "${INPUT}" NAME)
file(WRITE "${OUTPUT}"
  "// Generated from ${name} by EmbedFile.cmake: edit the source file, not this one.\n"
  "#pragma once\n\n"
  "inline constexpr unsigned char ${SYMBOL}[] = {\n    ${bytes}0x00};\n")
