# quay.io/prometheus/prometheus:<version>-distroless as the local cluster runs it: the binary
# that ci/cluster/build.sh builds, alone. The operator gives every flag and mounts the config,
# rules and data (/prometheus, the working directory as upstream's); nothing else is read from
# the image. Upstream's promtool and example config are left out.
FROM scratch
COPY prometheus /bin/prometheus
WORKDIR /prometheus
# distroless's nonroot user, as upstream's distroless image.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
