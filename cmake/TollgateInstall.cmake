# Install rules and the CMake config package (included by the top-level CMakeLists.txt after every
# component is defined):
#   bin/tollgate                                 the server and CLI
#   include/tollgate/*.h                         the public headers (not testing/, not the headers
#                                                of libraries that are not installed)
#   lib/libtollgate_*.a                          the libraries behind tollgate::tollgate
#   lib/cmake/tollgate/                          tollgateConfig.cmake, its version file, targets
#   (lib/ is GNUInstallDirs' CMAKE_INSTALL_LIBDIR: lib/<multiarch>/ when configured for /usr)
#   lib/systemd/system/tollgate.service, etc/tollgate/ (see packaging/)
# find_package(tollgate CONFIG REQUIRED) then gives tollgate::tollgate, an INTERFACE umbrella over
# the leases and the limiter (core), policy files (config), the backends (local, async, open and
# redis / postgres / etcd when built), the holder and the client; each also as tollgate::<name>
# (tollgate_backend_redis -> tollgate::backend_redis).
include(CMakePackageConfigHelpers)

# The generated public header tollgate/version.h (TOLLGATE_VERSION, from project()).
set(TOLLGATE_GENERATED_INCLUDE_DIR ${PROJECT_BINARY_DIR}/generated/include)
configure_file(${PROJECT_SOURCE_DIR}/cmake/version.h.in
               ${TOLLGATE_GENERATED_INCLUDE_DIR}/tollgate/version.h @ONLY)

# The libraries a consumer links. Backends that this build lacks (their
# dependency was missing at configure time) are simply not part of the package.
set(TOLLGATE_EXPORTED_LIBRARIES tollgate_core tollgate_storage tollgate_config tollgate_backend_async
    tollgate_backend_local)
set(TOLLGATE_CONFIG_BACKENDS memory embedded)
foreach(backend redis postgres etcd)
  if(TARGET tollgate_backend_${backend})
    list(APPEND TOLLGATE_EXPORTED_LIBRARIES tollgate_backend_${backend})
    list(APPEND TOLLGATE_CONFIG_BACKENDS ${backend})
  endif()
endforeach()
list(APPEND TOLLGATE_EXPORTED_LIBRARIES tollgate_backend_open tollgate_holder tollgate_client)
# Plus every tollgate_* library those link, publicly or not (a static library's private
# dependencies are linked by its consumers too), so a new internal dependency cannot break the
# export. One that brings an outside package needs its find_dependency in tollgateConfig.cmake.in.
set(_tollgate_queue ${TOLLGATE_EXPORTED_LIBRARIES})
while(_tollgate_queue)
  list(POP_FRONT _tollgate_queue _tollgate_lib)
  get_target_property(_tollgate_links ${_tollgate_lib} LINK_LIBRARIES)
  get_target_property(_tollgate_ilinks ${_tollgate_lib} INTERFACE_LINK_LIBRARIES)
  foreach(_tollgate_dep IN LISTS _tollgate_links _tollgate_ilinks)
    if(_tollgate_dep MATCHES "^tollgate_" AND TARGET ${_tollgate_dep}
       AND NOT _tollgate_dep IN_LIST TOLLGATE_EXPORTED_LIBRARIES)
      list(APPEND TOLLGATE_EXPORTED_LIBRARIES ${_tollgate_dep})
      list(APPEND _tollgate_queue ${_tollgate_dep})
    endif()
  endforeach()
endwhile()
set(TOLLGATE_CONFIG_NEEDS_PROMETHEUS OFF)
if(tollgate_metrics IN_LIST TOLLGATE_EXPORTED_LIBRARIES)
  set(TOLLGATE_CONFIG_NEEDS_PROMETHEUS ON)
endif()

# The umbrella. `tollgate` is the executable's name, so the target is tollgate_lib, exported (and
# aliased, for add_subdirectory users) as tollgate::tollgate.
add_library(tollgate_lib INTERFACE)
target_link_libraries(tollgate_lib INTERFACE ${TOLLGATE_EXPORTED_LIBRARIES})
target_include_directories(tollgate_lib INTERFACE
  $<BUILD_INTERFACE:${TOLLGATE_GENERATED_INCLUDE_DIR}>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(tollgate_lib PROPERTIES EXPORT_NAME tollgate)
add_library(tollgate::tollgate ALIAS tollgate_lib)

# Each library's include directories are source paths (include/ and, for its own sources, src/):
# in the exported targets they only apply in this build tree; an installed copy has include/ alone.
# Public headers never include a src/ path (tests/install_consumer_test.sh compiles against the
# installed headers only).
foreach(lib ${TOLLGATE_EXPORTED_LIBRARIES})
  get_target_property(dirs ${lib} INTERFACE_INCLUDE_DIRECTORIES)
  set(wrapped "")
  foreach(dir ${dirs})
    if(dir MATCHES "^\\$<")  # already a generator expression
      list(APPEND wrapped "${dir}")
    else()
      list(APPEND wrapped "$<BUILD_INTERFACE:${dir}>")
    endif()
  endforeach()
  list(APPEND wrapped "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
  set_target_properties(${lib} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${wrapped}")
  string(REGEX REPLACE "^tollgate_" "" export_name ${lib})
  set_target_properties(${lib} PROPERTIES EXPORT_NAME ${export_name})
  add_library(tollgate::${export_name} ALIAS ${lib})
endforeach()

if(NOT TOLLGATE_INSTALL)
  return()
endif()

install(TARGETS tollgate RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(TARGETS ${TOLLGATE_EXPORTED_LIBRARIES} tollgate_lib EXPORT tollgateTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT devel
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT devel
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT devel)
# Public headers: not testing/ (test-only: FakeClock), not simulate.h / policy_check.h (the
# simulator and the linter are parts of the executable, not installed libraries).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/tollgate
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT devel
        FILES_MATCHING PATTERN "*.h"
        PATTERN "testing" EXCLUDE
        PATTERN "simulate.h" EXCLUDE
        PATTERN "policy_check.h" EXCLUDE)
install(FILES ${TOLLGATE_GENERATED_INCLUDE_DIR}/tollgate/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tollgate COMPONENT devel)

set(TOLLGATE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tollgate)
install(EXPORT tollgateTargets NAMESPACE tollgate:: DESTINATION ${TOLLGATE_CMAKE_DIR}
        COMPONENT devel)

# What tollgateConfig.cmake must find again: what the exported libraries link (static libraries
# carry their private dependencies too).
set(TOLLGATE_CONFIG_PQ_MODULE "")
if(TARGET tollgate_backend_postgres)
  set(TOLLGATE_CONFIG_PQ_MODULE PQ:libpq)
endif()
set(TOLLGATE_CONFIG_NEEDS_CURL OFF)
if(TARGET tollgate_backend_etcd)
  set(TOLLGATE_CONFIG_NEEDS_CURL ON)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tollgateConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/tollgateConfig.cmake
  INSTALL_DESTINATION ${TOLLGATE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/tollgateConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/tollgateConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/tollgateConfigVersion.cmake
        DESTINATION ${TOLLGATE_CMAKE_DIR} COMPONENT devel)

# The service: systemd unit and default configuration (packaging/). /etc follows GNUInstallDirs'
# rule, decided at install time: prefix /usr (the .deb) -> /etc/tollgate, any other prefix P ->
# P/etc/tollgate; the unit's ExecStart names <prefix>/bin/tollgate.
configure_file(${PROJECT_SOURCE_DIR}/cmake/install_service.cmake.in
               ${PROJECT_BINARY_DIR}/cmake/install_service.cmake @ONLY)
install(SCRIPT ${PROJECT_BINARY_DIR}/cmake/install_service.cmake COMPONENT service)
