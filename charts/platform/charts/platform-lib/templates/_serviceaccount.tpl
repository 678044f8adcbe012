{{- /* The service's ServiceAccount. Call with the subchart's root context. */ -}}
{{- define "platform-lib.serviceaccount" -}}
{{- $ctx := dict "root" . "service" .Chart.Name -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "platform-lib.meta" $ctx | nindent 2 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
# The services never call the Kubernetes API.
automountServiceAccountToken: false
{{- end -}}
