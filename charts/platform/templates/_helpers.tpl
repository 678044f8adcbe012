{{- /* Names and lists the umbrella's templates share; the per-service ones are in platform-lib. */ -}}

{{- /* The enabled services, in a fixed order, as a JSON list (fromJsonArray to use it). */ -}}
{{- define "platform.services" -}}
{{- $enabled := list -}}
{{- range $service := list "auth" "api" "images" -}}
{{- if (index $.Values $service).enabled -}}
{{- $enabled = append $enabled $service -}}
{{- end -}}
{{- end -}}
{{- toJson $enabled -}}
{{- end -}}

{{- define "platform.namespace" -}}
{{- include "platform-lib.namespace" (dict "root" .root "component" .component) -}}
{{- end -}}

{{- /* The namespaces holding platform pods, each once (JSON list). */ -}}
{{- define "platform.workloadNamespaces" -}}
{{- $namespaces := list -}}
{{- range $service := include "platform.services" . | fromJsonArray -}}
{{- $namespaces = append $namespaces (include "platform.namespace" (dict "root" $ "component" $service)) -}}
{{- end -}}
{{- if or .Values.postgresql.enabled .Values.minio.enabled -}}
{{- $namespaces = append $namespaces (include "platform.namespace" (dict "root" $ "component" "infrastructure")) -}}
{{- end -}}
{{- $namespaces | uniq | toJson -}}
{{- end -}}

{{- define "platform.labels" -}}
{{- include "platform-lib.labels" (dict "root" .root "name" (.name | default "platform") "component" .component) -}}
{{- end -}}

{{- /* A NetworkPolicy peer: the pods labelled `labels` in namespace `namespace`. */ -}}
{{- define "platform.peer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    {{- if .labels }}
    matchLabels:
      {{- toYaml .labels | nindent 6 }}
    {{- else }}
    {}
    {{- end }}
{{- end -}}

{{- /*
Labels of every pod of a service of this release, for the network policies: the component
label, which the service's Deployment pods and the images reconcile CronJob's pods share (their
app.kubernetes.io/name differs, so the Service, HPA and PDB select only the Deployment's).
*/ -}}
{{- define "platform.servicePodLabels" -}}
app.kubernetes.io/component: {{ .service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- /* Labels of the Bitnami charts' pods (their common.labels.matchLabels). */ -}}
{{- define "platform.bitnamiPodLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- /*
"true" when this render reads the cluster: `helm install`/`upgrade` and `--dry-run=server`.
`helm template`, `--dry-run=client` and GitOps tools that render with `helm template` (Argo CD)
get an empty answer from every lookup. kube-system exists in every cluster, and before anything
of this release does: Helm renders before it creates the namespace of --create-namespace, so the
release namespace is not proof. Reading it needs `get` on namespaces; a lookup Helm is refused
fails the render rather than passing for "no cluster".
*/ -}}
{{- define "platform.clusterVisible" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" -}}true{{- end -}}
{{- end -}}

{{- /*
The rule every generated secret value follows (platform.keptValue):
a new value only when the render can see the cluster, where lookup has just shown there is none
to keep. A render without the cluster would make a new value on every run, which no longer
matches the one PostgreSQL, MinIO or the tokens were created with: it fails and names the
existingSecret value to set instead, unless global.secrets.allowGeneratedWithoutCluster says
the install is throwaway. Renders nothing.
dict "root" $ "name" <Secret> "value" <the existingSecret value that replaces it>
*/ -}}
{{- define "platform.generatedSecretAllowed" -}}
{{- if not (or (include "platform.clusterVisible" .root) ((.root.Values.global.secrets | default dict).allowGeneratedWithoutCluster)) -}}
{{- fail (printf "Secret %s would be generated without access to the cluster (helm template, --dry-run=client, Argo CD), so with a new random value on every render that no longer matches the running one: set %s to a Secret you create (chart README, \"Secrets with GitOps\"), or install with helm install/upgrade; for a throwaway development install only, set global.secrets.allowGeneratedWithoutCluster=true" .name .value) -}}
{{- end -}}
{{- end -}}
