# mlc.cmake — mlc_add_model(), for projects that use mlc through
# find_package(mlc) (an installed mlc: this file is in lib/cmake/mlc) or
# add_subdirectory(path/to/mlc) (mlc's own CMakeLists.txt includes it).
#
#   mlc_add_model(<target> MODEL file.mdl
#                 [DEVICE cpu|cuda] [EMBED_WEIGHTS w.safetensors]
#                 [NAME <base>] [OPTIONS <mlc options>...])
#
# Runs `mlc file.mdl -o <dir>/<base>.c [--embed-weights w.safetensors] OPTIONS`
# at build time, again whenever the .mdl, the weights file or mlc itself
# changes, and adds the generated sources (<base>.c, and <base>_weights.c with
# EMBED_WEIGHTS) to <target>, <dir> to its include path (#include "<base>.h")
# and links it with mlc::mlcrt (the static runtime).  <dir> is
# ${CMAKE_CURRENT_BINARY_DIR}/mlc/<target>; <base> defaults to the .mdl's
# name.  Relative paths are relative to ${CMAKE_CURRENT_SOURCE_DIR}.
# OPTIONS are passed to mlc as they are (e.g. --model NAME, -O0,
# --precision tf32).
#
# DEVICE cuda generates <base>.cu instead (the same <base>.h and API; the
# instance runs on CUDA device opts->device_index, device 0 for NULL opts) and
# links mlc::mlcrt_cuda (libmlcrt_cuda, cuBLAS and the CUDA runtime).  The
# project must enable CUDA (project(... LANGUAGES C CUDA) or
# enable_language(CUDA)) so CMake compiles the .cu with nvcc for the target's
# CUDA_ARCHITECTURES, and mlc must have been built with the CUDA toolkit (then
# find_package(mlc) finds the toolkit too and gives mlc::mlcrt_cuda).

function(mlc_add_model target)
  cmake_parse_arguments(PARSE_ARGV 1 MLC "" "MODEL;DEVICE;EMBED_WEIGHTS;NAME" "OPTIONS")
  if(MLC_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "mlc_add_model(${target}): unknown arguments: ${MLC_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TARGET ${target})
    message(FATAL_ERROR "mlc_add_model: '${target}' is not a target (create it with add_executable or add_library first)")
  endif()
  if(NOT MLC_MODEL)
    message(FATAL_ERROR "mlc_add_model(${target}): MODEL file.mdl is required")
  endif()
  set(ext c)
  set(runtime mlc::mlcrt)
  if(MLC_DEVICE STREQUAL "cuda")
    if(NOT TARGET mlc::mlcrt_cuda)
      message(FATAL_ERROR "mlc_add_model(${target}): DEVICE cuda needs mlc::mlcrt_cuda, which this mlc lacks (it was built without the CUDA toolkit)")
    endif()
    get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
    if(NOT "CUDA" IN_LIST languages)
      message(FATAL_ERROR "mlc_add_model(${target}): DEVICE cuda needs CUDA enabled in the project: project(... LANGUAGES C CUDA) or enable_language(CUDA)")
    endif()
    if(NOT TARGET CUDA::cudart) # what mlc::mlcrt_cuda links, defined per directory
      find_package(CUDAToolkit REQUIRED)
    endif()
    set(ext cu)
    set(runtime mlc::mlcrt_cuda)
  elseif(MLC_DEVICE AND NOT MLC_DEVICE STREQUAL "cpu")
    message(FATAL_ERROR "mlc_add_model(${target}): DEVICE must be cpu or cuda, got '${MLC_DEVICE}'")
  endif()
  if(NOT TARGET mlc::mlc_exe OR NOT TARGET mlc::mlcrt)
    message(FATAL_ERROR "mlc_add_model: the targets mlc::mlc_exe and mlc::mlcrt are missing (use find_package(mlc) or add_subdirectory(mlc) first)")
  endif()

  get_filename_component(mdl "${MLC_MODEL}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  set(base "${MLC_NAME}")
  if(NOT base)
    get_filename_component(base "${mdl}" NAME_WE)
  endif()
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/mlc/${target}")
  file(MAKE_DIRECTORY "${dir}")
  set(outputs "${dir}/${base}.${ext}" "${dir}/${base}.h")
  set(args "${mdl}" -o "${dir}/${base}.${ext}")
  set(depends "${mdl}" mlc::mlc_exe)
  if(MLC_EMBED_WEIGHTS)
    get_filename_component(w "${MLC_EMBED_WEIGHTS}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND outputs "${dir}/${base}_weights.c")
    list(APPEND args --embed-weights "${w}")
    list(APPEND depends "${w}")
  endif()
  list(APPEND args ${MLC_OPTIONS})

  add_custom_command(
    OUTPUT ${outputs}
    COMMAND mlc::mlc_exe ${args}
    DEPENDS ${depends}
    COMMENT "mlc: ${MLC_MODEL} -> ${base}.${ext}"
    VERBATIM)
  target_sources(${target} PRIVATE ${outputs})
  target_include_directories(${target} PRIVATE "${dir}")
  target_link_libraries(${target} PRIVATE ${runtime})
endfunction()
