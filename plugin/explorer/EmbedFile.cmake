# Writes a C++ header holding the bytes of one or more files, concatenated in order, as a
# NUL-terminated array, so that scripts can be compiled into the plugin without escaping
# them by hand.
# Usage: cmake -DINPUT=file[,file...] -DOUTPUT=header -DSYMBOL=name -P EmbedFile.cmake
# SPDX-License-Identifier: GPL-3.0-or-later
string(REPLACE "," ";" inputs "${INPUT}")
set(bytes "")
set(names "")
foreach(input IN LISTS inputs)
  file(READ "${input}" part HEX)
  # A newline between files, so that each starts on a line of its own.
  string(APPEND bytes "${part}0a")
  get_filename_component(name "${input}" NAME)
  list(APPEND names "${name}")
endforeach()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${bytes}")
# Sixteen bytes a line keep the generated header readable in a debugger or a diff.
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen)
string(REGEX REPLACE "(${sixteen})" "\\1\n    " bytes "${bytes}")
string(REPLACE ";" ", " names "${names}")
file(WRITE "${OUTPUT}"
  "// Generated from ${names} by EmbedFile.cmake: edit the source files, not this one.\n"
  "#pragma once\n\n"
  "inline constexpr unsigned char ${SYMBOL}[] = {\n    ${bytes}0x00};\n")
