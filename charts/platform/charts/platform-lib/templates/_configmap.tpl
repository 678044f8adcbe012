{{- /*
The service's ConfigMap: every setting that is not a secret. Call with the subchart's root
context.
*/ -}}
{{- define "platform-lib.configmap" -}}
{{- $root := . -}}
{{- $service := .Chart.Name -}}
{{- $values := $root.Values -}}
{{- $global := $values.global -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "platform-lib.meta" (dict "root" $root "service" $service) | nindent 2 }}
data:
  SERVICE_NAME: {{ $service | quote }}
  PORT: {{ include "platform-lib.port" $service | quote }}
  METRICS_PORT: {{ include "platform-lib.metricsPort" $service | quote }}
  WEB_CONCURRENCY: {{ $values.gunicorn.workers | quote }}
  GUNICORN_THREADS: {{ $values.gunicorn.threads | quote }}
  GUNICORN_GRACEFUL_TIMEOUT: {{ $values.gunicorn.gracefulTimeoutSeconds | quote }}
  # The ingress controller and the gateway reach the pods from other nodes' addresses.
  FORWARDED_ALLOW_IPS: {{ $values.gunicorn.forwardedAllowIps | quote }}
  LOG_LEVEL: {{ $values.logLevel | quote }}
  {{- if has $service (list "auth" "images") }}
  # The api checks no token itself (it asks auth's POST /verify): no token setting at all.
  JWT_ISSUER: {{ $global.jwt.issuer | quote }}
  JWT_AUDIENCE: {{ $global.jwt.audience | quote }}
  {{- end }}
  DB_POOL_SIZE: {{ $values.database.poolSize | quote }}
  DB_MAX_OVERFLOW: {{ $values.database.maxOverflow | quote }}
  {{- $tracing := $global.tracing | default dict }}
  {{- if $tracing.otlpEndpoint }}
  # Trace export (servicekit.tracing); absent = off. The OpenTelemetry SDK reads the rest.
  OTEL_EXPORTER_OTLP_ENDPOINT: {{ $tracing.otlpEndpoint | quote }}
  OTEL_TRACES_SAMPLER: {{ $tracing.sampler | default "parentbased_always_on" | quote }}
  {{- if contains "traceidratio" ($tracing.sampler | default "") }}
  OTEL_TRACES_SAMPLER_ARG: {{ $tracing.samplerArg | toString | quote }}
  {{- end }}
  OTEL_RESOURCE_ATTRIBUTES: {{ printf "deployment.environment.name=%s" $global.environment | quote }}
  {{- end }}
  {{- if eq $service "auth" }}
  # How long verifiers may cache the JWKS; key retirement waits it out.
  JWKS_MAX_AGE_SECONDS: {{ $global.jwt.jwksCacheSeconds | quote }}
  {{- end }}
  {{- if eq $service "images" }}
  AUTH_JWKS_URL: {{ printf "%s/.well-known/jwks.json" (include "platform-lib.serviceUrl" (dict "root" $root "service" "auth")) | quote }}
  JWKS_CACHE_SECONDS: {{ $global.jwt.jwksCacheSeconds | quote }}
  {{- end }}
  {{- if eq $service "api" }}
  AUTH_SERVICE_URL: {{ include "platform-lib.serviceUrl" (dict "root" $root "service" "auth") | quote }}
  IMAGES_SERVICE_URL: {{ include "platform-lib.serviceUrl" (dict "root" $root "service" "images") | quote }}
  RATE_LIMIT_WINDOW_SECONDS: {{ $values.rateLimit.windowSeconds | quote }}
  RATE_LIMIT_LOGIN: {{ $values.rateLimit.login | quote }}
  RATE_LIMIT_REGISTER: {{ $values.rateLimit.register | quote }}
  TRUSTED_PROXIES: {{ join "," $values.trustedProxies | quote }}
  {{- end }}
  {{- if eq $service "images" }}
  S3_ENDPOINT_URL: {{ include "platform-lib.objectStorageEndpoint" $root | quote }}
  {{- if include "platform-lib.bundledObjectStorage" $root }}
  S3_REGION: {{ $global.objectStorage.region | quote }}
  S3_BUCKET: {{ $global.objectStorage.bucket | quote }}
  S3_PATH_STYLE: "true"
  {{- else }}
  S3_REGION: {{ $global.externalObjectStorage.region | quote }}
  S3_BUCKET: {{ $global.externalObjectStorage.bucket | quote }}
  S3_PATH_STYLE: {{ $global.externalObjectStorage.pathStyle | quote }}
  {{- end }}
  # The bucket is provisioned with the object store (MinIO provisioning or your S3 account).
  S3_CREATE_BUCKET: "false"
  {{- end }}
  {{- range $name, $value := $values.settings }}
  {{ $name }}: {{ include "platform-lib.envValue" $value }}
  {{- end }}
{{- end -}}
