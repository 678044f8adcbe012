# quay.io/prometheus-operator/prometheus-operator as the local cluster runs it: the binary that
# ci/cluster/build.sh builds, alone (ci/images/build.sh passes a context holding only it).
# Upstream's image adds busybox, which the operator never runs.
FROM scratch
COPY prometheus-operator /bin/operator
# busybox's nobody, as upstream; the chart sets its own user (65534) anyway.
USER 65534:65534
ENTRYPOINT ["/bin/operator"]
