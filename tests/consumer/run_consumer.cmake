# Configures, builds and runs tests/consumer/project against redraft, as a downstream user would.
# -DMODE=find_package installs redraft into a prefix first; -DMODE=add_subdirectory does not.
file(REMOVE_RECURSE ${WORK_DIR})
set(project_dir ${SOURCE_DIR}/tests/consumer/project)
if(MODE STREQUAL "find_package")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/redraft-build
                    -DREDRAFT_BUILD_TESTS=OFF -DREDRAFT_BUILD_BENCHMARKS=OFF
                    -DREDRAFT_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "configuring redraft failed")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${WORK_DIR}/redraft-build RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "installing redraft failed")
  endif()
  set(config_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
else()
  set(config_args -DREDRAFT_SOURCE_DIR=${SOURCE_DIR})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${project_dir} -B ${WORK_DIR}/build ${config_args}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer ran but failed (exit ${rc})")
endif()
