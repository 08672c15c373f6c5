# Shell helpers sourced by the launch scripts (not a command).

show_help() {  # show_help: the calling script's header comment, then exit 0
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0
}

quote() {  # quote ARGS...: the arguments as one shell-quoted line, readable
  local out=() a key
  for a in "$@"; do
    key=""
    if [[ "$a" =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
      key="${BASH_REMATCH[1]}"; a="${BASH_REMATCH[2]}"
    fi
    if [[ "$a" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then out+=("${key}${a}")
    elif [[ "$a" != *[\'\"\$\`\\!]* ]]; then out+=("${key}'${a}'")
    elif [[ "$a" != *[\"\$\`\\!]* ]]; then out+=("${key}\"${a}\"")
    else out+=("${key}'${a//\'/\'\\\'\'}'"); fi
  done
  echo "${out[*]}"
}

sets_strategy() {  # sets_strategy ARGS...: true when ARGS set --config.parallel.strategy
  local a
  for a in "$@"; do
    [[ "$a" != --config.parallel.strategy* ]] || return 0
  done
  return 1
}
