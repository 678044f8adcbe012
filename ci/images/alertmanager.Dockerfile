# quay.io/prometheus/alertmanager as the local cluster runs it: the binary that
# ci/cluster/build.sh builds, alone. The operator gives every flag and mounts the config and
# data (/alertmanager, the working directory as upstream's). Upstream's amtool, busybox and
# example config are left out.
FROM scratch
COPY alertmanager /bin/alertmanager
WORKDIR /alertmanager
USER 65534:65534
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
