{{- /*
Names, namespaces, labels and addresses. Every helper takes the root context of whichever chart
calls it (a service subchart or the umbrella) and reads only .Release and .Values.global, so the
umbrella and the three subcharts always agree on a name.
*/ -}}

{{- /* The ports are part of the services' contract, not a setting. */ -}}
{{- define "platform-lib.port" -}}
{{- get (dict "auth" "3001" "api" "3002" "images" "3003") . -}}
{{- end -}}

{{- /*
/metrics is served on a port of its own (METRICS_PORT) so that the port the Ingress and the
HTTPRoute reach never carries it. One number per service, like the service ports, so the
local stack runs all three on one host with the same numbers as the cluster.
*/ -}}
{{- define "platform-lib.metricsPort" -}}
{{- get (dict "auth" "9101" "api" "9102" "images" "9103") . -}}
{{- end -}}

{{- /* dict "root" $ "service" "auth" -> "<release>-auth" */ -}}
{{- define "platform-lib.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /*
dict "root" $ "component" "auth|api|images|infrastructure|monitoring" -> the namespace that
component lives in: its own namespace in multi-namespace mode, the release namespace otherwise.
*/ -}}
{{- define "platform-lib.namespace" -}}
{{- $namespaces := .root.Values.global.namespaces -}}
{{- if eq $namespaces.mode "multi" -}}
{{- index $namespaces .component -}}
{{- else -}}
{{- .root.Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* dict "root" $ "name" "auth" -> the labels that select a workload's pods */ -}}
{{- define "platform-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- /* dict "root" $ "name" "auth" ["component" "..."] -> every label of an object */ -}}
{{- define "platform-lib.labels" -}}
{{ include "platform-lib.selectorLabels" . }}
app.kubernetes.io/component: {{ .component | default .name }}
app.kubernetes.io/part-of: platform
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | default .root.Chart.Version | quote }}
helm.sh/chart: {{ include "platform-lib.chartLabel" .root }}
{{- end -}}

{{- /* In-cluster URL of a service: dict "root" $ "service" "auth" */ -}}
{{- define "platform-lib.serviceUrl" -}}
{{- printf "http://%s.%s.svc.%s:%s"
      (include "platform-lib.fullname" .)
      (include "platform-lib.namespace" (dict "root" .root "component" .service))
      .root.Values.global.clusterDomain
      (include "platform-lib.port" .service) -}}
{{- end -}}

{{- /* The Bitnami charts' own fullname rule, so the services find the bundled servers. */ -}}
{{- define "platform-lib.postgresqlFullname" -}}
{{- if contains "postgresql" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-postgresql" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.minioFullname" -}}
{{- if contains "minio" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-minio" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- /* An empty externalDatabase.host means the bundled Bitnami PostgreSQL of this release. */ -}}
{{- define "platform-lib.bundledDatabase" -}}
{{- if not .Values.global.externalDatabase.host -}}true{{- end -}}
{{- end -}}

{{- define "platform-lib.bundledObjectStorage" -}}
{{- if not .Values.global.externalObjectStorage.endpoint -}}true{{- end -}}
{{- end -}}

{{- define "platform-lib.databaseHost" -}}
{{- if include "platform-lib.bundledDatabase" . -}}
{{- printf "%s.%s.svc.%s" (include "platform-lib.postgresqlFullname" .)
      (include "platform-lib.namespace" (dict "root" . "component" "infrastructure"))
      .Values.global.clusterDomain -}}
{{- else -}}
{{- .Values.global.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.databasePort" -}}
{{- if include "platform-lib.bundledDatabase" . -}}5432{{- else -}}{{ .Values.global.externalDatabase.port }}{{- end -}}
{{- end -}}

{{- define "platform-lib.objectStorageEndpoint" -}}
{{- if include "platform-lib.bundledObjectStorage" . -}}
{{- printf "http://%s.%s.svc.%s:9000" (include "platform-lib.minioFullname" .)
      (include "platform-lib.namespace" (dict "root" . "component" "infrastructure"))
      .Values.global.clusterDomain -}}
{{- else -}}
{{- .Values.global.externalObjectStorage.endpoint -}}
{{- end -}}
{{- end -}}

{{- /* Secret names: the existingSecret when one is given, else the one the umbrella generates. */ -}}
{{- define "platform-lib.signingKeySecretName" -}}
{{- .Values.global.jwt.existingSecret | default (printf "%s-jwt-signing-key" .Release.Name) -}}
{{- end -}}

{{- /* dict "root" $ "service" "auth" "database" <the service's database values> */ -}}
{{- define "platform-lib.databaseSecretName" -}}
{{- .database.existingSecret | default (printf "%s-%s-database" .root.Release.Name .service) -}}
{{- end -}}

{{- /* dict "root" $ "objectStorage" <the images service's objectStorage values> */ -}}
{{- define "platform-lib.objectStorageSecretName" -}}
{{- if include "platform-lib.bundledObjectStorage" .root -}}
{{- .objectStorage.existingSecret | default (printf "%s-images-object-storage" .root.Release.Name) -}}
{{- else -}}
{{- .root.Values.global.externalObjectStorage.existingSecret -}}
{{- end -}}
{{- end -}}
