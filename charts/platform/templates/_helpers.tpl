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
