# Uses ccache when it is installed. CCACHE_BASEDIR lets clones in other
# directories share the cache. Precompiled headers need the sloppiness
# settings below and -fpch-preprocess for ccache to cache the TUs using them.
find_program(GATI_CCACHE ccache)
if(GATI_CCACHE)
  message(STATUS "gati: using ccache at ${GATI_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}"
      ${GATI_CCACHE})
  add_compile_options(-fpch-preprocess)
endif()
