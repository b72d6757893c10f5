# Sourced by the scripts that build Kubernetes binaries (control plane, kubectl):
#   kube_ldflags VERSION   prints the -ldflags that stamp VERSION into the binary,
#                          as Kubernetes' own release build does (`kubectl version`).
kube_ldflags() {
  local version="$1" major minor flags="-s -w" date
  major="${version#v}"; minor="${major#*.}"; major="${major%%.*}"; minor="${minor%%.*}"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=${version} -X $pkg.gitMajor=${major} -X $pkg.gitMinor=${minor}"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date}"
  done
  echo "$flags"
}
