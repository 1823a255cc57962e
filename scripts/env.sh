# Source this file (after scripts/bootstrap) for a shell in which every pref-rl node and
# command works:   source scripts/env.sh
# It activates .venv (the ROS 2 underlay: the Kilted wheels install share/, lib/ there),
# sources the colcon overlay install/setup.bash and sets the environment the nodes need.
_pref_rl_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -f "$_pref_rl_root/install/setup.bash" ]; then
  echo "pref-rl: run scripts/bootstrap first (no install/setup.bash)" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_pref_rl_root/.venv/bin/activate"
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
# colcon's scripts read unset variables; relax nounset while sourcing them.
_pref_rl_u=$(set +o | grep nounset); set +u
# shellcheck disable=SC1091
source "$_pref_rl_root/install/setup.bash"
eval "$_pref_rl_u"; unset _pref_rl_u
export PREF_RL_ROOT="$_pref_rl_root"
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
# The wheels are ROS 2 Kilted; a sourced /opt/ros setup sets its own ROS_DISTRO (bags record it).
export ROS_DISTRO=${ROS_DISTRO:-kilted}
export ROS_LOG_DIR=${ROS_LOG_DIR:-$_pref_rl_root/log/ros}
export MUJOCO_GL=${MUJOCO_GL:-osmesa}
export PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-osmesa}
# Without a display Qt renders offscreen; with one (a desktop or Xvfb) it opens windows.
[ -n "${DISPLAY:-}" ] || export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
unset _pref_rl_root

# Claim a ROS_DOMAIN_ID no other pref-rl run on this machine holds (a lock file per id, held
# by this shell and its children until they exit), so parallel runs never cross-talk.
pref_rl_claim_domain() {
  local id
  for id in $(shuf -i 1-100); do
    exec {_pref_rl_domain_fd}>"${TMPDIR:-/tmp}/pref-rl-ros-domain-$id.lock"
    if flock -n "$_pref_rl_domain_fd"; then
      export ROS_DOMAIN_ID=$id
      return 0
    fi
    exec {_pref_rl_domain_fd}>&-
  done
  echo "pref-rl: every ROS_DOMAIN_ID in 1-100 is in use by another run" >&2
  return 1
}
