# bash completion for hsmsh. The words come from `hsmsh complete WORD... CURRENT` (the
# commands, recipes, their parameters and values as that hsmsh carries them); when it
# offers none, bash completes file names. Installed as share/bash-completion/completions/hsmsh.
_hsmsh() {
    local line=${COMP_LINE:0:COMP_POINT} words
    read -ra words <<<"$line"
    [[ $line == *[[:space:]] ]] && words+=("")
    local cur=${words[-1]} IFS=$'\n'
    # shellcheck disable=SC2207 # one candidate a line
    COMPREPLY=($("${words[0]}" complete "${words[@]:1}" 2>/dev/null))
    # readline replaces only the part after the last = or :, or from the last @ on: the
    # candidates lose what comes before it
    local word=${cur##*[=:]}
    [[ $word == *@* ]] && word=@${word##*@}
    COMPREPLY=("${COMPREPLY[@]/#"${cur%"$word"}"/}")
    [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace
    return 0
}
complete -o default -F _hsmsh hsmsh
