# quay.io/prometheus-operator/prometheus-config-reloader as the local cluster runs it: the binary
# that ci/cluster/build.sh builds, alone. The operator starts it by this path (command
# /bin/prometheus-config-reloader) in the Prometheus and Alertmanager pods.
FROM scratch
COPY prometheus-config-reloader /bin/prometheus-config-reloader
USER 65534:65534
ENTRYPOINT ["/bin/prometheus-config-reloader"]
