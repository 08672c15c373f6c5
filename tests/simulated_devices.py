"""XLA_FLAGS of the test environment: N simulated CPU devices; set before jax is imported.

- XLA:CPU ends the process (SIGABRT, "Termination timeout ... Exiting to ensure a consistent
  program state") when a device has waited 40 s at a collective for the others, its default.
  Four simulated devices share two cores with a second test worker and the runs it starts, so
  one device can fall behind for a while without anything being wrong; they wait up to 2
  minutes (warn after 1), and a true deadlock still ends the process soon.
- XLA:CPU's results follow the host's CPU: it compiles fusions for the host's instruction
  set (fused multiply-adds and the vector width change the last bits of a step, and a few
  hundred steps later every logged number), and its YNNPACK fusions (dots, reductions) pick
  their kernels by the CPU at run time. The tests compare runs with numbers recorded on
  another machine (tests/data) and hold trained toy models to thresholds, so YNNPACK is off
  (dots go to the Eigen kernels built into jaxlib) and on x86-64 the code is compiled for
  AVX2 with FMA and 256-bit vectors (x86-64-v3, which CI machines have), whatever more the
  host offers: the same program, the same bits, on any of them.
"""
import platform

COLLECTIVE_TIMEOUTS = ('--xla_cpu_collective_call_warn_stuck_timeout_seconds=60 '
                       '--xla_cpu_collective_call_terminate_timeout_seconds=120')
NO_RUNTIME_DISPATCH = '--xla_cpu_experimental_ynn_fusion_type='  # no YNNPACK fusions
X86_ISA = '--xla_cpu_max_isa=AVX2 --xla_cpu_prefer_vector_width=256'


def xla_flags(devices: int) -> str:
  isa = X86_ISA if platform.machine().lower() in ('x86_64', 'amd64') else ''
  return (f'--xla_force_host_platform_device_count={devices} {COLLECTIVE_TIMEOUTS} '
          f'{NO_RUNTIME_DISPATCH} {isa}').strip()
