"""Forms the pages post: signup, rename and a conversation's settings. They only validate;
the views hand the cleaned values to services."""

from asgiref.sync import async_to_sync
from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from conversations.accounts import awaiting_approval
from conversations.models import MODEL_ID_MAX_LENGTH
from conversations.modelservers import providers

# The largest value an integer column holds on every database we support (PostgreSQL).
_MAX_INT = 2_147_483_647

_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


class SignupForm(UserCreationForm):
    """Username and password twice; the password validators in settings apply."""


class LoginForm(AuthenticationForm):
    """Django's login form, which tells an account awaiting approval that it is, rather than
    calling its right password wrong."""

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            username, password = self.data.get("username", ""), self.data.get("password", "")
            if username and password and awaiting_approval(username=username, password=password):
                raise forms.ValidationError(
                    "Your account is waiting for an administrator's approval. You can log in "
                    "once it is approved.",
                    code="awaiting_approval",
                ) from None
            raise


class RenameForm(forms.Form):
    # Blank gives the conversation back its "New chat" label.
    title = forms.CharField(max_length=200, required=False, strip=True)


class ConversationSettingsForm(forms.Form):
    model = forms.RegexField(
        regex=_MODEL_ID,
        max_length=MODEL_ID_MAX_LENGTH,
        error_messages={"invalid": "Choose a model from the list."},
    )
    system_prompt = forms.CharField(
        required=False,
        strip=False,
        max_length=32_000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Instructions the model reads before every message of this conversation.",
    )
    temperature = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1.5,
        help_text="0 to 1.5: lower is focused, higher is varied. Blank: the model's default.",
    )
    top_p = forms.FloatField(
        required=False,
        max_value=1,
        help_text="Above 0, at most 1. Blank: the model's default.",
    )
    max_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=_MAX_INT,
        help_text="The longest answer, in tokens. Blank: no limit but the model's own.",
    )
    random_seed = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=_MAX_INT,
        help_text="The same seed and settings give the same answer. Blank: random.",
    )
    safe_prompt = forms.BooleanField(
        required=False,
        help_text="Ask Mistral to add its safety instructions before the conversation.",
    )

    def __init__(self, *args, current_model: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current_model = current_model  # kept even when no server lists it any more

    def clean_model(self) -> str:
        """Only a model the picker offers: the id is stored and sent upstream as it is."""
        model = self.cleaned_data["model"]
        if model != self.current_model and not async_to_sync(providers.model_offered)(model):
            raise forms.ValidationError("No model server of this site offers this model.")
        return model

    def clean_top_p(self) -> float | None:
        top_p = self.cleaned_data["top_p"]
        if top_p is not None and top_p <= 0:
            raise forms.ValidationError("Top P must be greater than 0.")
        return top_p
