# cpack -G DEB (from the build directory) makes two packages:
#   tollgate      the `tollgate` binary (/usr/bin), the systemd unit (/usr/lib/systemd/system/
#                 tollgate.service: user tollgate, data in /var/lib/tollgate, hardened) and the
#                 default configuration (/etc/tollgate/tollgate.env, policies.yaml: conffiles);
#                 postinst creates the tollgate user and group and enables the service.
#   tollgate-dev  headers, static libraries and the CMake package for find_package(tollgate).
# The install components behind them: runtime and service (tollgate), devel (tollgate-dev).
if(NOT TOLLGATE_INSTALL)
  return()
endif()

set(CPACK_PACKAGE_NAME tollgate)
set(CPACK_PACKAGE_VENDOR "tollgate")
set(CPACK_PACKAGE_CONTACT "tollgate maintainers <tollgate@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Fenced leases and rate limits behind the Redis protocol, with an HTTP API")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_README ${PROJECT_SOURCE_DIR}/README.md)
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR "")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)  # the binary without its debug information

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime service devel)
set(CPACK_COMPONENTS_GROUPING ONE_PER_GROUP)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/tollgate/tollgate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# tollgate: shared-library dependencies from dpkg-shlibdeps, plus adduser for postinst.
set(CPACK_DEBIAN_SERVER_PACKAGE_NAME tollgate)
set(CPACK_DEBIAN_SERVER_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_SERVER_PACKAGE_DEPENDS "adduser")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "tollgate serve: locks with fencing tokens, semaphores, fenced registers and\nlayered token-bucket rate limits over RESP and HTTP, durable on an embedded\nstore or shared through Redis, PostgreSQL or etcd. Runs as the systemd\nservice tollgate (user tollgate, data in /var/lib/tollgate).")
set(CPACK_DEBIAN_SERVER_DESCRIPTION "${CPACK_COMPONENT_RUNTIME_DESCRIPTION}")
set(CPACK_DEBIAN_SERVER_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/deb/postinst ${PROJECT_SOURCE_DIR}/packaging/deb/prerm
    ${PROJECT_SOURCE_DIR}/packaging/deb/postrm ${PROJECT_SOURCE_DIR}/packaging/deb/conffiles)

# tollgate-dev: what tollgateConfig.cmake finds again (find_dependency).
set(CPACK_DEBIAN_DEV_PACKAGE_NAME tollgate-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "libabsl-dev, librocksdb-dev, libspdlog-dev, libyaml-cpp-dev, libhiredis-dev, libpq-dev, libcurl4-openssl-dev, nlohmann-json3-dev, pkg-config")
set(CPACK_DEBIAN_DEV_DESCRIPTION
    "tollgate C++ library: headers, static libraries, CMake package\nfind_package(tollgate CONFIG REQUIRED) gives tollgate::tollgate: fenced\nleases, the rate limiter, the backends (memory, embedded, Redis, PostgreSQL,\netcd), the lease holder and the client of tollgate serve.")

include(CPack)
cpack_add_component_group(server)
cpack_add_component_group(dev)
cpack_add_component(runtime GROUP server)
cpack_add_component(service GROUP server)
cpack_add_component(devel GROUP dev)
