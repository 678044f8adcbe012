{{- /*
Every object one service needs, from the calling subchart's own values:
ServiceAccount, ConfigMap, Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget.
Call it with the subchart's root context: {{ include "platform-lib.service" . }}
*/ -}}
{{- define "platform-lib.service" -}}
{{- $ctx := dict "root" . "service" .Chart.Name -}}
{{- include "platform-lib.checkValues" . -}}
{{ include "platform-lib.serviceAccount" $ctx }}
---
{{ include "platform-lib.configMap" $ctx }}
---
{{ include "platform-lib.deployment" $ctx }}
---
{{ include "platform-lib.kubeService" $ctx }}
{{- if .Values.autoscaling.enabled }}
---
{{ include "platform-lib.hpa" $ctx }}
{{- end }}
---
{{ include "platform-lib.pdb" $ctx }}
{{- end -}}

{{- /* Refuses combinations that would start but misbehave, with a message that says why. */ -}}
{{- define "platform-lib.checkValues" -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- $drain := add (int .Values.gunicorn.gracefulTimeoutSeconds) (int .Values.preStopSleepSeconds) -}}
{{- if le $grace $drain -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be longer than gunicorn.gracefulTimeoutSeconds + preStopSleepSeconds (%d), or requests in flight are cut off at shutdown" .Chart.Name $grace $drain) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d)" .Chart.Name (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.meta" -}}
name: {{ include "platform-lib.fullname" . }}
namespace: {{ include "platform-lib.namespace" (dict "root" .root "component" .service) }}
labels:
  {{- include "platform-lib.labels" (dict "root" .root "name" .service) | nindent 2 }}
{{- end -}}

{{- define "platform-lib.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "platform-lib.meta" . | nindent 2 }}
# The services never call the Kubernetes API.
automountServiceAccountToken: false
{{- end -}}

{{- /* Every setting that is not a secret. */ -}}
{{- define "platform-lib.configMap" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $global := $values.global -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "platform-lib.meta" . | nindent 2 }}
data:
  SERVICE_NAME: {{ .service | quote }}
  PORT: {{ include "platform-lib.port" .service | quote }}
  WEB_CONCURRENCY: {{ $values.gunicorn.workers | quote }}
  GUNICORN_THREADS: {{ $values.gunicorn.threads | quote }}
  GUNICORN_GRACEFUL_TIMEOUT: {{ $values.gunicorn.gracefulTimeoutSeconds | quote }}
  # The ingress controller and the gateway reach the pods from other nodes' addresses.
  FORWARDED_ALLOW_IPS: {{ $values.gunicorn.forwardedAllowIps | quote }}
  LOG_LEVEL: {{ $values.logLevel | quote }}
  JWT_ISSUER: {{ $global.jwt.issuer | quote }}
  JWT_AUDIENCE: {{ $global.jwt.audience | quote }}
  DB_POOL_SIZE: {{ $values.database.poolSize | quote }}
  DB_MAX_OVERFLOW: {{ $values.database.maxOverflow | quote }}
  {{- with ($global.tracing | default dict).otlpEndpoint }}
  # Trace export (servicekit.tracing); absent = off.
  OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
  {{- end }}
  {{- if eq .service "api" }}
  AUTH_SERVICE_URL: {{ include "platform-lib.serviceUrl" (dict "root" $root "service" "auth") | quote }}
  IMAGES_SERVICE_URL: {{ include "platform-lib.serviceUrl" (dict "root" $root "service" "images") | quote }}
  {{- end }}
  {{- if eq .service "images" }}
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

{{- /*
A value as an environment variable. YAML numbers reach templates as float64, which would print
20971520 as "2.097152e+07" and fail the service's integer setting; whole numbers print as integers.
*/ -}}
{{- define "platform-lib.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . | toString | quote -}}
{{- else -}}
{{- . | toString | quote -}}
{{- end -}}
{{- end -}}

{{- /*
Rolls the pods when a Secret they use changes: the Secret names, plus the content of each
existingSecret as the cluster holds it at upgrade time (generated secrets never change).
*/ -}}
{{- define "platform-lib.secretChecksum" -}}
{{- $root := .root -}}
{{- $namespace := include "platform-lib.namespace" (dict "root" $root "component" .service) -}}
{{- $existing := list $root.Values.global.jwt.existingSecret $root.Values.database.existingSecret -}}
{{- $names := list (include "platform-lib.jwtSecretName" $root) (include "platform-lib.databaseSecretName" (dict "root" $root "service" .service "database" $root.Values.database)) -}}
{{- if eq .service "images" -}}
{{- $name := include "platform-lib.objectStorageSecretName" (dict "root" $root "objectStorage" $root.Values.objectStorage) -}}
{{- $names = append $names $name -}}
{{- $existing = append $existing (ternary $root.Values.objectStorage.existingSecret $name (not (empty (include "platform-lib.bundledObjectStorage" $root)))) -}}
{{- end -}}
{{- $content := list -}}
{{- range $name := compact $existing -}}
{{- $content = append $content ((lookup "v1" "Secret" $namespace $name).data | default dict | toJson) -}}
{{- end -}}
{{- printf "%s|%s" (join "," $names) (join "," $content) | sha256sum -}}
{{- end -}}

{{- define "platform-lib.env" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $database := $values.database -}}
- name: DB_USER
  value: {{ $database.user | quote }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "platform-lib.databaseSecretName" (dict "root" $root "service" .service "database" $database) }}
      key: {{ $database.existingSecretPasswordKey }}
# Kubernetes expands $(DB_USER) and $(DB_PASSWORD) from the two variables above, so the password
# stays in its Secret. Passwords must be URL-safe (generated ones are alphanumeric).
- name: DATABASE_URL
  value: {{ printf "postgresql+psycopg2://$(DB_USER):$(DB_PASSWORD)@%s:%s/%s%s"
              (include "platform-lib.databaseHost" $root) (include "platform-lib.databasePort" $root) $database.name
              (ternary (printf "?sslmode=%s" $root.Values.global.externalDatabase.sslMode) ""
                 (and (empty (include "platform-lib.bundledDatabase" $root)) (not (empty $root.Values.global.externalDatabase.sslMode)))) | quote }}
- name: JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "platform-lib.jwtSecretName" $root }}
      key: {{ $root.Values.global.jwt.existingSecretKey }}
{{- if eq .service "images" }}
{{- $s3Secret := include "platform-lib.objectStorageSecretName" (dict "root" $root "objectStorage" $values.objectStorage) }}
- name: S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: access-key-id
- name: S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3Secret }}
      key: secret-access-key
{{- end }}
{{- end -}}

{{- define "platform-lib.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "platform-lib.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "platform-lib.image" -}}
{{- $image := .Values.image -}}
{{- $registry := $image.registry | default .Values.global.image.registry -}}
{{- $tag := $image.tag | default .Values.global.image.tag | default .Chart.AppVersion -}}
{{- if $image.digest -}}
{{- printf "%s/%s@%s" $registry $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "platform-lib.deployment" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $selector := include "platform-lib.selectorLabels" (dict "root" $root "name" .service) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "platform-lib.meta" . | nindent 2 }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "platform-lib.labels" (dict "root" $root "name" .service) | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "platform-lib.configMap" . | sha256sum }}
        checksum/secret: {{ include "platform-lib.secretChecksum" . }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "platform-lib.fullname" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "platform-lib.podSecurityContext" . | nindent 8 }}
      # Longer than the preStop pause plus gunicorn's graceful timeout (checked at render).
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- with $values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: {{ $values.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
        {{- if $values.topologySpread.zones }}
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
          matchLabelKeys: ["pod-template-hash"]
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $values.migrations.enabled }}
      # Schema migrations before the service starts. Several pods may start at once: the
      # migrate command holds a PostgreSQL advisory lock, so one applies each revision and the
      # others find nothing left to do. Until the database answers, the kubelet retries it.
      initContainers:
        - name: migrate
          image: {{ include "platform-lib.image" $root }}
          imagePullPolicy: {{ $values.global.image.pullPolicy }}
          command: ["platform-migrate", {{ .service | quote }}]
          envFrom:
            - configMapRef:
                name: {{ include "platform-lib.fullname" . }}
          env:
            {{- include "platform-lib.env" . | nindent 12 }}
          securityContext:
            {{- include "platform-lib.containerSecurityContext" . | nindent 12 }}
          resources:
            {{- toYaml $values.migrations.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      {{- end }}
      containers:
        - name: {{ .service }}
          image: {{ include "platform-lib.image" $root }}
          imagePullPolicy: {{ $values.global.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ include "platform-lib.port" .service }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "platform-lib.fullname" . }}
          env:
            {{- include "platform-lib.env" . | nindent 12 }}
          # /live does no I/O: a slow database makes a pod unready, never restarts it.
          startupProbe:
            httpGet:
              path: /live
              port: http
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: {{ $values.probes.startupFailureThreshold }}
          livenessProbe:
            httpGet:
              path: /live
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /ready
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          lifecycle:
            # Endpoints are removed asynchronously; keep serving until every proxy has noticed.
            preStop:
              sleep:
                seconds: {{ $values.preStopSleepSeconds }}
          securityContext:
            {{- include "platform-lib.containerSecurityContext" . | nindent 12 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        # gunicorn's worker heartbeat files, prometheus multiprocess files and spooled uploads.
        - name: tmp
          emptyDir:
            sizeLimit: {{ $values.tmpSizeLimit }}
{{- end -}}

{{- define "platform-lib.kubeService" -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "platform-lib.meta" . | nindent 2 }}
spec:
  type: ClusterIP
  selector:
    {{- include "platform-lib.selectorLabels" (dict "root" .root "name" .service) | nindent 4 }}
  ports:
    - name: http
      port: {{ include "platform-lib.port" .service }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "platform-lib.hpa" -}}
{{- $autoscaling := .root.Values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  {{- include "platform-lib.meta" . | nindent 2 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "platform-lib.fullname" . }}
  minReplicas: {{ $autoscaling.minReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $autoscaling.targetMemoryUtilizationPercentage }}
  behavior:
    scaleDown:
      # Scale in slowly: a short lull should not undo what the last burst needed.
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
{{- end -}}

{{- define "platform-lib.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "platform-lib.meta" . | nindent 2 }}
spec:
  minAvailable: {{ .root.Values.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "platform-lib.selectorLabels" (dict "root" .root "name" .service) | nindent 6 }}
{{- end -}}
