option(DRAINPROXY_WERROR "Treat compiler warnings as errors" OFF)

function(drainproxy_enable_warnings target)
  # -Wno-mismatched-new-delete: gcc 12 false positive on Asio's awaitable frames.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-mismatched-new-delete)
  if(DRAINPROXY_WERROR AND NOT DRAINPROXY_SANITIZE)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
