{{/*
The chart name, or nameOverride.
*/}}
{{- define "sei-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else `<release>-<name>`, or just the
release name when it already contains the chart name. Truncated to 63 characters (DNS label).
*/}}
{{- define "sei-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
`<chart>-<version>`, for the helm.sh/chart label.
*/}}
{{- define "sei-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "sei-operator.labels" -}}
helm.sh/chart: {{ include "sei-operator.chart" . }}
{{ include "sei-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: sei-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the controller pods (immutable in a Deployment: never add to them).
*/}}
{{- define "sei-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sei-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The controller's ServiceAccount.
*/}}
{{- define "sei-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sei-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false (the chart's RBAC would otherwise bind the namespace's default account)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Lease the controller uses: `leaderElection.leaseName`, or with `controller.shardSelector` that
name and the first 8 hex digits of the selector's sha256 (what the binary derives from
`--leader-election-lease-name` and `--shard-selector`, host/src/shard.rs).
*/}}
{{- define "sei-operator.leaseName" -}}
{{- if .Values.controller.shardSelector -}}
{{- printf "%s-%s" .Values.leaderElection.leaseName (sha256sum .Values.controller.shardSelector | trunc 8) -}}
{{- else -}}
{{- .Values.leaderElection.leaseName -}}
{{- end -}}
{{- end }}

{{/*
The namespace of the ConfigMaps TaskModules may take module bytes from.
*/}}
{{- define "sei-operator.moduleConfigMapNamespace" -}}
{{- default .Release.Namespace .Values.taskModules.configMapNamespace }}
{{- end }}

{{/*
The image reference.
*/}}
{{- define "sei-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Platform settings: value key under `platform` -> environment variable, in rendering order.
Required ones fail rendering when empty.
*/}}
{{- define "sei-operator.platformEnv" -}}
{{- $p := .Values.platform }}
- name: SEI_SNAPSHOT_BUCKET
  value: {{ required "platform.snapshotBucket is required: the S3 bucket of chain snapshots (SEI_SNAPSHOT_BUCKET), e.g. --set platform.snapshotBucket=my-snapshots" $p.snapshotBucket | quote }}
- name: SEI_GENESIS_BUCKET
  value: {{ required "platform.genesisBucket is required: the S3 bucket of genesis files (SEI_GENESIS_BUCKET), e.g. --set platform.genesisBucket=my-genesis" $p.genesisBucket | quote }}
{{- $optional := list
  (list "snapshotRegion" "SEI_SNAPSHOT_REGION")
  (list "genesisRegion" "SEI_GENESIS_REGION")
  (list "sidecarImage" "SEI_SIDECAR_IMAGE")
  (list "nodepoolName" "SEI_NODEPOOL_NAME")
  (list "nodepoolArchive" "SEI_NODEPOOL_ARCHIVE")
  (list "tolerationKey" "SEI_TOLERATION_KEY")
  (list "serviceAccount" "SEI_SERVICE_ACCOUNT")
  (list "storageClassPerf" "SEI_STORAGE_CLASS_PERF")
  (list "storageClassDefault" "SEI_STORAGE_CLASS_DEFAULT")
  (list "storageClassArchive" "SEI_STORAGE_CLASS_ARCHIVE")
  (list "storageSizeDefault" "SEI_STORAGE_SIZE_DEFAULT")
  (list "storageSizeArchive" "SEI_STORAGE_SIZE_ARCHIVE")
  (list "resourceCpuDefault" "SEI_RESOURCE_CPU_DEFAULT")
  (list "resourceMemDefault" "SEI_RESOURCE_MEM_DEFAULT")
  (list "resourceCpuArchive" "SEI_RESOURCE_CPU_ARCHIVE")
  (list "resourceMemArchive" "SEI_RESOURCE_MEM_ARCHIVE")
  (list "gatewayName" "SEI_GATEWAY_NAME")
  (list "gatewayNamespace" "SEI_GATEWAY_NAMESPACE")
  (list "gatewayDomain" "SEI_GATEWAY_DOMAIN")
  (list "gatewayPublicDomain" "SEI_GATEWAY_PUBLIC_DOMAIN")
}}
{{- range $optional }}
{{- $value := get $p (index . 0) }}
{{- if $value }}
- name: {{ index . 1 }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Settings that cannot work, refused at render time.
*/}}
{{- define "sei-operator.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "leaderElection.enabled=false with replicaCount=%d: two replicas without leader election would both step every plan. Enable leader election or set replicaCount=1." (int .Values.replicaCount)) }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
{{- $le := .Values.leaderElection }}
{{- if not $le.leaseName }}
{{- fail "leaderElection.leaseName must not be empty when leader election is enabled" }}
{{- end }}
{{- if ge (int $le.renewDeadlineSeconds) (int $le.leaseDurationSeconds) }}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%d) must be shorter than leaderElection.leaseDurationSeconds (%d), or a replica that cannot renew would still act after another took over" (int $le.renewDeadlineSeconds) (int $le.leaseDurationSeconds)) }}
{{- end }}
{{- if ge (int $le.retryPeriodSeconds) (int $le.renewDeadlineSeconds) }}
{{- fail (printf "leaderElection.retryPeriodSeconds (%d) must be shorter than leaderElection.renewDeadlineSeconds (%d)" (int $le.retryPeriodSeconds) (int $le.renewDeadlineSeconds)) }}
{{- end }}
{{- end }}
{{- end }}
