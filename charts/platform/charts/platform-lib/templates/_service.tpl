{{- /* The service's ClusterIP Service. Call with the subchart's root context. */ -}}
{{- define "platform-lib.service" -}}
{{- $service := .Chart.Name -}}
{{- $ctx := dict "root" . "service" $service -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "platform-lib.meta" $ctx | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "platform-lib.selectorLabels" (dict "root" . "name" $service) | nindent 4 }}
  ports:
    - name: http
      port: {{ include "platform-lib.port" $service }}
      targetPort: http
      protocol: TCP
    # What the ServiceMonitor scrapes; no Ingress or HTTPRoute names it.
    - name: metrics
      port: {{ include "platform-lib.metricsPort" $service }}
      targetPort: metrics
      protocol: TCP
{{- end -}}
