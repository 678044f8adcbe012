{{- /*
The rule files and dashboards name the release's namespaces by placeholders, so that the very
same files stay valid for promtool and Grafana's JSON schema in the repository:
  __PLATFORM_NAMESPACES__  the namespaces of the release's services, as a regex (auth|api|image-storage
                           in multi mode, the release namespace in single mode)
  __AUTH_NAMESPACE__, __API_NAMESPACE__, __IMAGES_NAMESPACE__  the namespace of each service
  __INFRASTRUCTURE_NAMESPACE__  where PostgreSQL, MinIO and the backup CronJobs run
A service turned off (<service>.enabled=false) has no target on purpose: its
`absent(up{job="<service>",namespace="__<SERVICE>_NAMESPACE__"})` becomes `absent(vector(1))`,
which is always empty, so ServiceDown does not fire for it forever.
dict "root" $ "text" <file content> -> the content with the placeholders filled in.
*/ -}}
{{- define "platform.monitoring.fillNamespaces" -}}
{{- $root := .root -}}
{{- $text := .text -}}
{{- $namespaces := list -}}
{{- range $service := list "auth" "api" "images" -}}
{{- $namespace := include "platform.namespace" (dict "root" $root "component" $service) -}}
{{- $placeholder := printf "__%s_NAMESPACE__" (upper $service) -}}
{{- if (index $root.Values $service).enabled -}}
{{- $namespaces = append $namespaces $namespace -}}
{{- else -}}
{{- $text = replace (printf "absent(up{job=%q,namespace=%q})" $service $placeholder) "absent(vector(1))" $text -}}
{{- end -}}
{{- $text = replace $placeholder $namespace $text -}}
{{- end -}}
{{- $text = replace "__INFRASTRUCTURE_NAMESPACE__" (include "platform.namespace" (dict "root" $root "component" "infrastructure")) $text -}}
{{- replace "__PLATFORM_NAMESPACES__" ($namespaces | uniq | join "|") $text -}}
{{- end -}}
