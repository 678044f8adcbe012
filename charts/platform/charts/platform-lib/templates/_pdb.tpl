{{- /* The service's PodDisruptionBudget. Call with the subchart's root context. */ -}}
{{- define "platform-lib.pdb" -}}
{{- $service := .Chart.Name -}}
{{- $ctx := dict "root" . "service" $service -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "platform-lib.meta" $ctx | nindent 2 }}
spec:
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "platform-lib.selectorLabels" (dict "root" . "name" $service) | nindent 6 }}
{{- end -}}
